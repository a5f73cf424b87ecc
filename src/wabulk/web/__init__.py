"""The WhatsApp Web page layer: opening chats, composing, reading bubbles, attachments (and page scripts)."""
