"""A model on the user's own images: `fit` on a folder of normal images, `score` new files."""
