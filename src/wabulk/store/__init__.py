"""The SQLite queue, split by concern; :class:`wabulk.queue.Queue` combines the parts."""
