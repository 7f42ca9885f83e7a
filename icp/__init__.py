"""segue icp."""
