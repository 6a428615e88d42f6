"""Shared by the REST API and the dashboard: authentication, problem answers, request
fields, how records are presented, uploads, background jobs, templates, words and reports."""
