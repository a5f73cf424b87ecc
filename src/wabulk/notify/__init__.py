"""Notifications: what a worker (or ``wabulk serve``) tells a webhook or a command when a human should know.

See :mod:`wabulk.notify.store` (the outbox tables), :mod:`wabulk.notify.watch` (what becomes a notification)
and :mod:`wabulk.notify.deliver` (signed webhooks, commands, the background thread).
"""
