"""Device-side detection: tracking, zones, object events, snapshots and detection quality, as pure parts."""
