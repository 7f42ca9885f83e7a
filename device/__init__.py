"""segue device."""
