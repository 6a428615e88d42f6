"""Actions: the outbox, its dispatcher, channels, triggers, playbooks and tasks."""
