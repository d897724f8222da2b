"""Site adaptation: validate the model on a hospital's own data and set its thresholds."""
