"""The service's HTTP routes, one router per concern: predict.py (/v1/predict, /v1/explain),
info.py (/health, /v1/model, /v1/samples, the page at /)."""
