"""The local cloud: emulators, the local OIDC issuer and scheduler, the launcher and demo."""
