"""The WhatsApp Business Cloud API provider (Meta's Graph API)."""
