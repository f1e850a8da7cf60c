"""Certifying an agent: the harness's scenarios (harness, channel_phase, tls_run), the truth of
the recordings it serves, and the checks that judge what it recorded (checks/)."""
