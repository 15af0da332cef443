"""Monitoring: inference events and what consumes them (payload logging now; the prediction
store, drift, shadow comparison and the dashboard's time series next).

events.py is the backbone: the dataplane publishes one InferenceEvent per request to the
EventBus; consumers subscribe with bounded queues (docs/payload-logging.md, "The event bus").
"""

from modelserve.monitoring.events import EventBus, InferenceEvent, Subscription

__all__ = ["EventBus", "InferenceEvent", "Subscription"]
