"""tierwise: customer segmentation and tiering."""
__version__ = "0.1.0"
