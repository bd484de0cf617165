"""Datasets: the COCO-JSON reader every dataset goes through, the digit-scenes generator, splits."""
from .coco import CocoData, DetectionDataset, collate, load_coco

__all__ = ["CocoData", "DetectionDataset", "collate", "load_coco"]
