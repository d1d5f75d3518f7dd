"""The service's endpoints, one module per concern; ``service/app.py`` includes them."""
