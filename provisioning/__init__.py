"""segue provisioning."""
