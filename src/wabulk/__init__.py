"""wabulk: send personalised WhatsApp messages in bulk through WhatsApp Web, safely and resumably."""

__version__ = "0.1.0"
