"""CLIP similarities of edits (paper §5 "Metrics", Table 1; InstructPix2Pix / Instruct-NeRF2NeRF protocol).

Embeddings come from transformers' ``CLIPModel`` (``get_image_features`` / ``get_text_features``, projected,
L2-normalised); images are fed in RGB order through the model's own ``CLIPImageProcessor``. With E_I / E_T
the image / text embeddings, ``b_i`` / ``a_i`` the views before / after the edit (in path order) and
``c_in`` / ``c_out`` the input / output captions, averaged over views:

- text-image similarity      cos(E_I(a_i), E_T(c_out))
- directional similarity     cos(E_I(a_i) - E_I(b_i), E_T(c_out) - E_T(c_in))       (Table 1 "Edit" in 2D,
                                                                                    Fig. 4 / 13 x-axis)
- image similarity           cos(E_I(a_i), E_I(b_i))                                (Fig. 4 / 13 y-axis)
- frame consistency          cos(E_I(a_i), E_I(a_{i+1}))                            (Table 1 "Frame")
- edit consistency           cos(E_I(a_i) - E_I(b_i), E_I(a_{i+1}) - E_I(b_{i+1}))  (Table 1 "Edit", IN2N)

A zero difference vector has cosine 0 with anything. Numbers from different CLIP models are not comparable:
every result records the model used. A randomly initialised CLIP measures nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from relevance_nerf2nerf.errors import InvalidInputError, ModelNotFoundError

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
NO_CLIP = "none"
"""``--clip-model`` value that skips the CLIP metrics (where a command allows it)."""
CLIP_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")  # fmt: skip
"""Weight files one of which a ``save_pretrained`` CLIP folder holds."""


def _is_local(source: str) -> bool:
    """Whether a CLIP reference names a folder (one that exists, or anything a hub id cannot be)."""
    from relevance_nerf2nerf.diffusion.settings import looks_like_path

    return looks_like_path(source)


def check_clip_model(model: str, flag: str = "--clip-model") -> None:
    """Refuse a CLIP reference that cannot load, before any model loads: a folder must exist and hold a CLIP
    ``config.json`` (model_type ``clip``), weights, a tokenizer and an image processor; a hub id must be in
    the local cache when the hub is offline (``HF_HUB_OFFLINE``).

    Args:
        model (str): a hub id or a local folder written by ``save_pretrained``.
        flag (str, default "--clip-model"): how the user named it, for the message.
    """
    import json

    from relevance_nerf2nerf.diffusion.settings import _cached_file, _hub_offline

    if not model.strip():
        raise InvalidInputError(
            f"{flag} is empty: pass a CLIP hub id such as {DEFAULT_CLIP} or a local folder"
        )
    if not _is_local(model):
        if _hub_offline() and _cached_file(model, "config.json") is None:
            raise InvalidInputError(
                f"{flag} {model} is not in the local Hugging Face cache and the hub is offline "
                "(HF_HUB_OFFLINE): download it once online, or pass a local folder"
            )
        return
    folder = Path(model).expanduser()
    advice = "pass a folder written by CLIPModel.save_pretrained (with its tokenizer and image processor)"
    if not folder.is_dir():
        raise InvalidInputError(
            f"{flag} {model}: no such folder; {advice} or a hub id such as {DEFAULT_CLIP}"
        )
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise InvalidInputError(f"{flag} {model} has no readable config.json: {advice}") from err
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != "clip":
        raise InvalidInputError(
            f"{flag} {model} is not a CLIP model (its config.json says {kind!r}): {advice}"
        )
    missing = [
        what
        for what, names in (
            ("weights", CLIP_WEIGHTS),
            ("tokenizer", ("tokenizer.json", "vocab.json")),
            ("image processor", ("preprocessor_config.json",)),
        )
        if not any((folder / name).is_file() for name in names)
    ]
    if missing:
        raise InvalidInputError(f"{flag} {model} has no {' and no '.join(missing)}: {advice}")


def check_caption(caption: object, flag: str) -> None:
    """Refuse a caption that is not one non-empty text (spaces and zero-width characters count as empty).

    Args:
        caption (object): what the user gave.
        flag (str): how the user named it (a flag, or a record's field), for the message.
    """
    from relevance_nerf2nerf.diffusion.settings import ZERO_WIDTH

    if not isinstance(caption, str):
        raise InvalidInputError(
            f"{flag} must be one text, got {type(caption).__name__}: e.g. \"a photo of a cat\""
        )
    if not caption.strip(ZERO_WIDTH + " \t\r\n\f\v"):
        raise InvalidInputError(f"{flag} is empty: describe the image, e.g. \"a photo of a cat\"")


def _mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-8).mean().item()


def text_image_similarity(images: torch.Tensor, text: torch.Tensor) -> float:
    """Mean cosine of image embeddings (N, D) with one text embedding (D,).

    Args:
        images (torch.Tensor): (N, D) L2-normalised image embeddings.
        text (torch.Tensor): (D,) L2-normalised text embedding.
    """
    return _mean_cosine(images, text.expand_as(images))


def directional_similarity(
    before: torch.Tensor, after: torch.Tensor, text_in: torch.Tensor, text_out: torch.Tensor
) -> float:
    """Mean cosine between the image change ``after - before`` (N, D) and the caption change ``text_out -
    text_in`` (D,): does the image move in CLIP space the way the captions say?

    Args:
        before (torch.Tensor): embeddings of the unedited images (N, D).
        after (torch.Tensor): embeddings of the edited images (N, D), paired with ``before``.
        text_in (torch.Tensor): embedding of the input caption (D,).
        text_out (torch.Tensor): embedding of the output caption (D,).
    """
    change = after - before
    return _mean_cosine(change, (text_out - text_in).expand_as(change))


def image_similarity(before: torch.Tensor, after: torch.Tensor) -> float:
    """Mean cosine of paired image embeddings (N, D): how much of the input the edit kept.

    Args:
        before (torch.Tensor): (N, D) embeddings of the unedited views.
        after (torch.Tensor): (N, D) embeddings of the same views edited.
    """
    return _mean_cosine(before, after)


def frame_consistency(frames: torch.Tensor) -> float:
    """Mean cosine of consecutive frame embeddings (N >= 2, D) along a path.

    Args:
        frames (torch.Tensor): (N, D) embeddings of consecutive frames, N >= 2.
    """
    if frames.shape[0] < 2:
        raise InvalidInputError("frame consistency needs at least two consecutive views")
    return _mean_cosine(frames[:-1], frames[1:])


def edit_consistency(before: torch.Tensor, after: torch.Tensor) -> float:
    """Mean cosine of consecutive frames' edit directions, ``(a_i - b_i)`` vs ``(a_{i+1} - b_{i+1})``.

    Args:
        before (torch.Tensor): (N, D) embeddings of consecutive unedited frames.
        after (torch.Tensor): (N, D) embeddings of the same frames edited.
    """
    if before.shape[0] < 2:
        raise InvalidInputError("edit consistency needs at least two consecutive views")
    change = after - before
    return _mean_cosine(change[:-1], change[1:])


class ClipEmbedder:
    """L2-normalised CLIP image and text embeddings from a hub id or a local ``save_pretrained`` folder
    (holding the model, its tokenizer and its ``CLIPImageProcessor``)."""

    def __init__(self, model: str | Path = DEFAULT_CLIP, device: str | torch.device = "cpu") -> None:
        """Load the model; raises :class:`ModelNotFoundError` in one line when it cannot be found.

        Args:
            model: hub id (e.g. ``openai/clip-vit-large-patch14``) or a local directory.
            device: where the model runs.
        """
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        source = str(model)
        local = _is_local(source)
        if local:
            check_clip_model(source, "CLIP model")
            source = str(Path(source).expanduser())
        try:
            self.model = CLIPModel.from_pretrained(source).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.processor = CLIPImageProcessor.from_pretrained(source)
        except Exception as err:  # noqa: BLE001 - hub, network and format errors come in many types
            if local:
                raise ModelNotFoundError(
                    f"could not load CLIP from the folder '{model}' ({type(err).__name__}): its files are "
                    "damaged or incomplete; save the model, tokenizer and image processor again with "
                    "save_pretrained"
                ) from err
            raise ModelNotFoundError(
                f"could not load CLIP '{source}' from the hub (offline?): pass --clip-model with a local "
                f"folder saved by save_pretrained, or connect to the network once ({type(err).__name__})"
            ) from err
        self.name = source
        self.device = torch.device(device)

    @staticmethod
    def _features(output) -> torch.Tensor:
        # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor.
        features = output if isinstance(output, torch.Tensor) else output.pooler_output
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def images(self, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Embeddings (N, D) of RGB images (N, H, W, 3) in [0, 1].

        Args:
            images (torch.Tensor): float images in RGB order, channels last.
            batch_size (int, default 16): images per model call.
        """
        if images.dim() != 4 or images.shape[-1] != 3:
            raise InvalidInputError(f"CLIP needs RGB images (N, H, W, 3), got shape {tuple(images.shape)}")
        chunks = []
        for start in range(0, images.shape[0], batch_size):
            batch = [
                image.permute(2, 0, 1).float().clamp(0, 1) for image in images[start : start + batch_size]
            ]
            pixels = self.processor(images=batch, do_rescale=False, return_tensors="pt")["pixel_values"]
            output = self.model.get_image_features(pixel_values=pixels.to(self.device))
            chunks.append(self._features(output).cpu())
        return torch.cat(chunks)

    @torch.no_grad()
    def texts(self, texts: list[str]) -> torch.Tensor:
        """Embeddings (N, D) of captions.

        Args:
            texts (list[str]): the captions.
        """
        if any(not t.strip() for t in texts):
            raise InvalidInputError("a caption is empty: CLIP metrics need an input and an output caption")
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        output = self.model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        )
        return self._features(output).cpu()


def clip_metrics(
    clip: ClipEmbedder,
    before: torch.Tensor,
    after: torch.Tensor,
    input_caption: str,
    output_caption: str,
    *,
    sequential: bool = True,
) -> dict[str, float | str]:
    """Every CLIP similarity of an edit (see the module docstring).

    Args:
        clip (ClipEmbedder): the embedder.
        before (torch.Tensor): unedited views (N, H, W, 3) in [0, 1], in path order when ``sequential``.
        after (torch.Tensor): the same views edited.
        input_caption (str): caption of the unedited scene/image.
        output_caption (str): caption of the edited one.
        sequential (bool, default True): whether consecutive views are neighbours (frame / edit consistency
            are then computed).
    """
    b, a = clip.images(before), clip.images(after)
    t_in, t_out = clip.texts([input_caption, output_caption])
    result: dict[str, float | str] = {
        "clip_model": clip.name,
        "clip_text_image_similarity": text_image_similarity(a, t_out),
        "clip_directional_similarity": directional_similarity(b, a, t_in, t_out),
        "clip_image_similarity": image_similarity(b, a),
    }
    if sequential and len(a) >= 2:
        result["clip_frame_consistency"] = frame_consistency(a)
        result["clip_edit_consistency"] = edit_consistency(b, a)
    return result
