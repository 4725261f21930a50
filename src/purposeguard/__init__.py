"""purposeguard."""
