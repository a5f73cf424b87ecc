"""What the schema's migrations are called, without importing them.

``migrations.py`` needs sqlite-utils (about 0.15 s to import); every command opens the queue, and almost
never has a migration to run. So the queue checks the recorded names against this list with plain SQL and
imports the migrations only when something is pending. A test keeps this list equal to migrations.py's.
"""

from __future__ import annotations

MIGRATION_SET = "wabulk"
NAMES: tuple[str, ...] = (
    "m001_initial",
    "m002_job_counts",
    "m003_stamp_session",
    "m004_receipts",
    "m005_enqueue_counts",
    "m006_fail_closed",
    "m007_notifications",
    "m008_device_linked",
    "m009_session_provider",
    "m010_fail_closed_queue",
    "m013_cloud",
    "m014_template_catalogue",
    "m014_template_components",
    "m014_pricing_index",
    "m015_worker_cap",
    "m018_template_layout",
)
