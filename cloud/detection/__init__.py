"""Object detection in the cloud: synthetic scenes, COCO data, a CenterNet-style detector, mAP-gated export."""
