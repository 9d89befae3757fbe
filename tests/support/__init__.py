"""What the tests share: servers, fakes, sample connectors and requests."""
