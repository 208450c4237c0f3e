"""Pure tensor operations: boxes, NMS, anchors. No file I/O, no model code."""
