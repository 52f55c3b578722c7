"""The operator console: sign-in, Now, decisions, incidents, approvals, audit, lessons and chat in the browser."""
