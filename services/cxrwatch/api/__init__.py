"""The alerts API: REST, a live stream and the alert board, over the alert store.

It reads what the alerter stored in Redis (:mod:`cxrwatch.core.alertstore`)
and writes only acknowledgements and resolutions, each appended to the audit
trail. It consumes no topic and emits none.
"""
