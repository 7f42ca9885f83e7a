"""segue evaluation."""
