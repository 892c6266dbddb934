"""The embedded service: a stand-in for the email service's API-users endpoint (HTTP API over a
SQLite store, the SMTP relay, fault injection), the way LocalStack stands in for a cloud. The
reconciler never imports this package; it only talks to it over HTTP. Installed by the `service`
extra: pip install 'reconciler[service]'."""
