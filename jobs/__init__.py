"""The settle queue between the API and the worker: the brokers, the message both sides
agree on, and the API's sending end. ``api/`` and ``worker/`` import it; it imports
neither of them."""
