"""The cxr_fusion network: EfficientNet-B0 image branch fused with a clinical MLP.

Layout, following Jiao et al. (Lancet Digital Health 2021) in spirit:

- image branch: EfficientNet-B0 (1 input channel, 224x224, no pretrained
  weights) -> its final 1280 x 7 x 7 feature map -> one linear read-out over
  the whole map (it keeps where in the chest a feature lies, which global
  pooling would lose) -> one "lung opacity" score, clamped to the rule's
  opacity range so that an image unlike the training phantoms can move the
  risk only modestly;
- clinical branch: the 12 normalised features, clamped to +/- Z_LIMIT and
  multiplied by their mask (a masked value is ignored whatever it holds),
  concatenated with the mask (24 inputs) -> MLP -> 32-d embedding;
- fusion head: [embedding, opacity score] -> MLP -> two numbers: the logit
  of p_critical (returned through a sigmoid) and progression_risk.
"""

from __future__ import annotations

import torch
from efficientnet_pytorch import EfficientNet
from torch import nn

from risk_rule import OPACITY_Z_RANGE, Z_LIMIT

IMAGE_SIZE = 224
FEATURE_COUNT = 12
BACKBONE_WIDTH = 1280
FEATURE_GRID = 7
READOUT_WIDTH = BACKBONE_WIDTH * FEATURE_GRID * FEATURE_GRID
CLINICAL_EMBEDDING = 32


def build_backbone() -> EfficientNet:
    """Returns a randomly initialised, 1-channel EfficientNet-B0 without its top.

    Drop-connect is off so that a pass in training mode (used to recalibrate
    batch-norm statistics) is deterministic; the swish is the plain one, which
    ONNX export needs.
    """
    backbone = EfficientNet.from_name(
        "efficientnet-b0",
        in_channels=1,
        include_top=False,
        drop_connect_rate=0.0,
        image_size=IMAGE_SIZE,
    )
    backbone.set_swish(memory_efficient=False)
    return backbone


class ClinicalBranch(nn.Module):
    """Embeds the masked clinical vector and its mask."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2 * FEATURE_COUNT, 128),
            nn.SiLU(),
            nn.Linear(128, 128),
            nn.SiLU(),
            nn.Linear(128, CLINICAL_EMBEDDING),
            nn.SiLU(),
        )

    def forward(self, clinical: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        observed = torch.clamp(clinical, -Z_LIMIT, Z_LIMIT) * mask
        return self.layers(torch.cat([observed, mask], dim=1))  # type: ignore[no-any-return]


class FusionHead(nn.Module):
    """Maps [clinical embedding, opacity score] to the two raw outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(CLINICAL_EMBEDDING + 1, 64),
            nn.SiLU(),
            nn.Linear(64, 2),
        )

    def forward(self, embedding: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([embedding, opacity], dim=1))  # type: ignore[no-any-return]


class ImageBranch(nn.Module):
    """Scores the lung opacity of a [B, 1, 224, 224] MONOCHROME2 image."""

    def __init__(self, backbone: EfficientNet) -> None:
        super().__init__()
        self.backbone = backbone
        self.opacity = nn.Linear(READOUT_WIDTH, 1)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Returns the backbone's final feature map, flattened: [B, 62720]."""
        centred = (image - 0.5) / 0.25
        return self.backbone.extract_features(centred).flatten(1)  # type: ignore[no-any-return]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        low, high = OPACITY_Z_RANGE
        return torch.clamp(self.opacity(self.features(image)), low, high)


class CxrFusionNet(nn.Module):
    """The exported model: (image, clinical, clinical_mask) -> outputs."""

    def __init__(self, backbone: EfficientNet) -> None:
        super().__init__()
        self.image = ImageBranch(backbone)
        self.clinical = ClinicalBranch()
        self.fusion = FusionHead()

    def forward(
        self, image: torch.Tensor, clinical: torch.Tensor, clinical_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.fusion(self.clinical(clinical, clinical_mask), self.image(image))
        return torch.sigmoid(raw[:, 0:1]), raw[:, 1:2]
