"""The API's routers: tasks (clients), admin (operators), health (anyone)."""
