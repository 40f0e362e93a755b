"""The model build step: converts the offline-available weights into the model pack the pipeline loads."""
