"""Device-side sensor models: input checks, anomaly alerts and window figures, as pure parts."""
