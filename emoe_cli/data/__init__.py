"""Data: local files, GLUE-X folders or the hub, assembled into a task's train, ID and OOD
splits."""
