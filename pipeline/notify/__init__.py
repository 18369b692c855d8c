"""Notifications as plain Python: typed events, templates, and the e-mail and webhook senders.

Nothing here knows about queues or records: ``actors.notifications`` decides who gets what
and keeps delivery idempotent; these modules render and send one message.
"""
