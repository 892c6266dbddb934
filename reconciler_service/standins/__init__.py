"""Stand-ins of real services (Customers Mail Cloud, Mailgun), built from their published
references, for tests and demos. The tool never imports them."""
