"""The WhatsApp Web page layer behind ``session.py`` and ``sender.py``, split by concern (launch, profile,
page states, ...), so that the parts that change with the page are small and easy to find."""
