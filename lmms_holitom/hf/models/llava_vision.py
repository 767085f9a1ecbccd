"""The vision side of HoliTom's LLaVA adapter: `HoliTomLlavaOnevisionModel` (a `LlavaOnevisionModel` subclass).

``get_video_features`` runs the stock method — with `probes.VisionSaliencyProbe` hooked on ONE of its own vision
attention modules while the active method needs saliency — in the checkpoint's `VideoLayout`, and returns the stock
output as a `HoliTomVisionOutput` whose ``holitom`` field (`HoliTomVision`) holds the saliency (`VideoSaliency` or
None), the (B, F, N, E) pooled features without newlines and the `StageTimer` of the ``vision`` stage. transformers 5.x
``generate`` calls ``get_video_features`` itself before the first forward and hands the result over as
``mm_encoder_outputs``; this is why the probe lives here. With ``return_dict=False`` both return the stock tuple.
"""

from typing import Any

import torch
from transformers import LlavaOnevisionModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from lmms_holitom.core.state import HoliTomRuntime
from lmms_holitom.core.stats import StageTimer
from lmms_holitom.hf.models.layout import VideoLayout
from lmms_holitom.hf.models.llava_layout import dense_grid, pool_average
from lmms_holitom.hf.models.probes import VideoSaliency, VisionSaliencyProbe, feature_attention_module
from lmms_holitom.hf.outputs import HoliTomVision, HoliTomVisionOutput, pop_return_dict, typed_output

__all__ = ["HoliTomLlavaOnevisionModel"]


class HoliTomLlavaOnevisionModel(LlavaOnevisionModel):
    """The stock LLaVA-OneVision base model in a given video layout, recording HoliTom's vision saliency.

    Attributes:
        holitom_runtime: the model's one `HoliTomRuntime` (its active config — saliency is computed when the method
            needs it — probe chunk and timing mode), shared with the outer model.
        holitom_layout: the `VideoLayout` (bilinear + one newline: LLaVA-OneVision; average + grid: LLaVA-Video).
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.holitom_runtime = HoliTomRuntime()
        self.holitom_layout = VideoLayout()

    @property
    def patch_side(self) -> int:
        """Side of the vision tower's patch map (27 for SigLIP-384/14)."""
        return self.config.vision_config.image_size // self.config.vision_config.patch_size

    def apply_pooling(self, image_features: torch.Tensor) -> torch.Tensor:
        """The layout's pooling: stock bilinear (``ceil(side / 2)``) or 2×2 average (``side // 2``)."""
        if self.holitom_layout.pool_mode == "average":
            return pool_average(image_features, self.patch_side)
        return super().apply_pooling(image_features)

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | BaseModelOutputWithPooling:
        """Stock `get_video_features` (same arguments and output) in this layout, typed with ``holitom`` (above)."""
        if pixel_values_videos.ndim != 5 or pixel_values_videos.shape[1] == 0:
            raise ValueError(
                "the video has 0 frames or a wrong shape: pixel_values_videos must be (batch, frames >= 1, "
                f"channels, height, width), got {tuple(pixel_values_videos.shape)}"
            )
        return_dict = pop_return_dict(self, kwargs)
        layer = self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        strategy = vision_feature_select_strategy or self.config.vision_feature_select_strategy
        runtime = self.holitom_runtime
        probe = None
        if runtime.config is not None and runtime.config.needs_saliency:
            module = feature_attention_module(self.vision_tower, layer)
            probe = VisionSaliencyProbe(module, runtime.probe_chunk, want_keys=True)
        timer = StageTimer(pixel_values_videos.device, runtime.sync_timings)
        with timer.stage("vision"):
            call = dict(vision_feature_layer=layer, vision_feature_select_strategy=strategy, return_dict=True)
            if probe is None:
                output = super().get_video_features(pixel_values_videos, **call, **kwargs)
                saliency = None
            else:
                with probe:
                    output = super().get_video_features(pixel_values_videos, **call, **kwargs)
                rows = pixel_values_videos.shape[0] * pixel_values_videos.shape[1]
                saliency = self._pool_saliency(probe, rows, strategy)
            batch, frames = pixel_values_videos.shape[:2]
            features = output.pooler_output[:, :-1].reshape(batch, frames, -1, output.pooler_output.shape[-1])
            if self.holitom_layout.grid:
                output.pooler_output = dense_grid(features, self.image_newline)
        if not return_dict:
            return output.to_tuple()
        return typed_output(HoliTomVisionOutput, output, HoliTomVision(timer, features=features, saliency=saliency))

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        image_sizes: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        vision_aspect_ratio: str | None = None,
        batch_num_images: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | BaseModelOutputWithPooling:
        """Stock `get_image_features` (same arguments — ``generate`` selects them by name — and output), plus
        ``holitom`` (`HoliTomVision`: a `StageTimer` with the ``vision`` stage)."""
        return_dict = pop_return_dict(self, kwargs)
        timer = StageTimer(pixel_values.device, self.holitom_runtime.sync_timings)
        with timer.stage("vision"):
            output = super().get_image_features(
                pixel_values, image_sizes, vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                vision_aspect_ratio=vision_aspect_ratio, batch_num_images=batch_num_images, return_dict=True,
                **kwargs,
            )
        return typed_output(HoliTomVisionOutput, output, HoliTomVision(timer)) if return_dict else output.to_tuple()

    def _pool_saliency(self, probe: VisionSaliencyProbe, rows: int, select_strategy: str) -> VideoSaliency:
        """Probe outputs pooled exactly like the features (`apply_pooling`)."""
        if probe.attention is None or probe.keys is None or probe.calls != 1 or probe.attention.shape[0] != rows:
            seen = None if probe.attention is None else tuple(probe.attention.shape)
            raise RuntimeError(
                f"the vision attention probe saw {probe.calls} call(s) giving {seen}; expected one call over "
                f"{rows} frames"
            )
        attention, keys = probe.attention, probe.keys
        if select_strategy == "default":  # the features drop the first token; so does the saliency
            attention, keys = attention[:, 1:], keys[:, 1:]
        return VideoSaliency(
            attention=self.apply_pooling(attention.unsqueeze(-1).contiguous()).squeeze(-1),
            keys=self.apply_pooling(keys.contiguous()),
            raw_attention=probe.attention,
            peak_elements=probe.peak_elements,
            chunk=probe.chunk,
        )
