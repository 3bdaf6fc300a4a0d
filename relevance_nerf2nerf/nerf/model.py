"""Former location of the nerfacto scene model, kept so that runs saved before the move still load
(their ``config.yml`` names classes by module path). New code imports :mod:`.nerfacto_model`."""

from relevance_nerf2nerf.nerf.nerfacto_model import *  # noqa: F403
from relevance_nerf2nerf.nerf.nerfacto_model import (  # noqa: F401
    RelevanceNerfactoModel,
    RelevanceNerfactoModelConfig,
    nerfacto_without_lpips,
)
from relevance_nerf2nerf.nerf.relevance import *  # noqa: F403
