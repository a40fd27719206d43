"""cxhub connectors, one module per platform. Each imports only hub's connector API, errors and model."""
