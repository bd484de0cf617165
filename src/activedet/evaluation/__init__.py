"""Detection metrics: PASCAL VOC mAP and COCO bbox AP."""

from .coco import coco_evaluate, evaluate_detections
from .voc import voc_ap, voc_map

__all__ = ["voc_ap", "voc_map", "coco_evaluate", "evaluate_detections"]
