"""The domain core every layer uses: settings, errors, models, the event catalog, signing, the vault."""
