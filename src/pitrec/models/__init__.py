"""Models. A model file knows nothing of files on disk or of training loops."""
