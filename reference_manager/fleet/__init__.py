"""Fleet intelligence: alerts with a lifecycle, notifications, supply forecasts and orders."""
