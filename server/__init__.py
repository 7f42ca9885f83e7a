"""segue server."""
