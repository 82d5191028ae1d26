"""Settings of the onboarding process."""

from __future__ import annotations

from parley_shared.auth import ApiSettings
from pydantic import Field, SecretStr, model_validator


class OnboardingSettings(ApiSettings):
    """``parley-onboarding``: connects channels and holds their settings, teams and access."""

    http_port: int = 8081
    encryption_keys: SecretStr = Field(
        description="'<key id>:<base64 32 bytes>,...'; the first encrypts, all decrypt (rotation)."
    )
    graph_base_url: str = Field(
        default="",
        description="Where Meta's Graph API calls go; empty: Meta's own host (known to parley-providers). "
        "Only the provider sandbox changes it.",
    )
    graph_api_version: str = Field(
        default="",
        pattern=r"^(v\d+\.\d+)?$",
        description="The Graph API version Meta's calls use (vNN.N); empty: the version parley-providers "
        "is tested against. A version within 90 days of its end is warned about at start "
        "(docs/operations.md, moving the Graph API version).",
    )
    meta_login_base_url: str = Field(
        default="",
        description="Where the console sends a browser for Facebook Login's dialog; empty: Meta's own "
        "host (known to parley-providers). Only the provider sandbox changes it.",
    )
    meta_login_config_id: str | None = Field(
        default=None,
        description="A Facebook Login for Business configuration id: the console's Login dialog asks "
        "for its permissions and assets instead of a scope list.",
    )
    instagram_login_base_url: str = Field(
        default="",
        description="Where the console sends a browser for Instagram Login's authorization window; "
        "empty: Instagram's own host. Only the provider sandbox changes it.",
    )
    x_authorize_base_url: str = Field(
        default="",
        description="Where the console sends a browser for X's authorization page; empty: X's own "
        "host. Only the provider sandbox changes it.",
    )
    console_public_url: str = Field(
        default="",
        pattern=r"^(https?://[^/?#]+)?$",
        description="The console's public origin (scheme and host, e.g. https://parley.example.com) "
        "for the OAuth redirect URIs the providers come back to "
        "(<origin>/console/connect/<facebook|instagram|x>/callback, each registered in the "
        "provider's app); empty: the origin the request arrived on.",
    )
    meta_app_id: str = Field(description="The Meta app that Pages and Instagram profiles connect to.")
    meta_app_secret: SecretStr
    whatsapp_embedded_signup_config_id: str | None = Field(
        default=None,
        description="The Facebook Login for Business configuration id that launches WhatsApp Embedded "
        "Signup (App Dashboard > Facebook Login for Business > Configurations); handed to the browser "
        "with the Meta app id. The code it yields is traded with PARLEY_META_APP_ID and "
        "PARLEY_META_APP_SECRET.",
    )
    instagram_app_id: str | None = Field(
        default=None,
        description="The Instagram app of Business Login for Instagram (Instagram Login, no Page); "
        "unset: Instagram profiles connect through their Facebook Page only.",
    )
    instagram_app_secret: SecretStr | None = None
    instagram_oauth_base_url: str = Field(
        default="", description="Business Login for Instagram's host; empty: Instagram's own."
    )
    instagram_graph_base_url: str = Field(
        default="", description="The Instagram API's host; empty: Instagram's own (parley-providers)."
    )
    instagram_token_refresh_lead_s: int = Field(
        default=14 * 24 * 3600,
        gt=0,
        description="Instagram-login tokens are refreshed this long before their 60-day end (longer "
        "than PARLEY_TOKEN_EXPIRY_LEAD_S, so the expiry warning means a refresh failed).",
    )
    instagram_token_refresh_interval_s: float = Field(
        default=3600.0, gt=0, description="How often Instagram-login tokens are looked at for a refresh."
    )
    x_api_base_url: str = Field(
        default="",
        description="Where X API calls go; empty: X's own host (known to parley-providers). "
        "Only the provider sandbox changes it.",
    )
    x_client_id: str | None = None
    x_client_secret: SecretStr | None = None
    x_webhook_id: str | None = Field(default=None, description="The registered Account Activity webhook id.")
    x_activity_webhook_id: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,19}$",
        description="X's id (1-19 digits) of the webhook X Activity API subscriptions deliver to; with "
        "x_bearer_token it makes the X Activity API the one new X channels use.",
    )
    x_bearer_token: SecretStr | None = Field(
        default=None,
        description="X's app-only Bearer token (developer portal): lists and deletes subscriptions.",
    )
    x_subscription_check_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often the X Activity API subscriptions of every X channel using it are "
        "checked and what is missing re-created.",
    )
    x_token_refresh_lead_s: int = Field(
        default=1800,
        gt=0,
        description="X user tokens (2 hours) are refreshed this long before their end; longer than "
        "PARLEY_X_TOKEN_REFRESH_INTERVAL_S, so every token is refreshed before it ends.",
    )
    x_token_refresh_interval_s: float = Field(
        default=300.0, gt=0, description="How often X user tokens are looked at for a refresh."
    )
    meta_permissions: tuple[str, ...] | None = Field(
        default=None, description="Permissions a Page needs granted; unset: Meta's connector's own list."
    )
    instagram_permissions: tuple[str, ...] | None = Field(
        default=None,
        description="Permissions an Instagram profile needs granted; unset: Meta's connector's own list.",
    )
    page_subscribed_fields: tuple[str, ...] | None = Field(
        default=None, description="Page webhook fields the app subscribes to; unset: Meta's connector's own."
    )
    token_expiry_lead_s: int = Field(default=7 * 24 * 3600, gt=0, description="Warn this long before expiry.")
    token_check_interval_s: float = Field(default=3600.0, gt=0)
    hours_check_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often business hours are checked: an opening or closing is announced "
        "within this long of its time.",
    )
    connection_ttl_s: int = Field(default=3600, gt=0, description="How long a started Meta connection lasts.")
    connection_prune_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="How often expired Meta connections (and their Page tokens) are deleted.",
    )
    subscription_check_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often every active channel's webhook subscription is read and what is missing "
        "restored (Meta unsubscribes an app after long delivery failures).",
    )
    portfolio_check_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often active WhatsApp numbers that name no business portfolio (connected "
        "before Parley read it) have it read, so their messaging limit is counted per portfolio.",
    )
    max_teams_per_tenant: int = Field(
        default=500, gt=0, description="Teams a tenant may have (deleted ones do not count); more is a 409."
    )
    console_enabled: bool = Field(
        default=False,
        description="Serve the admin console under /console/ (docs/console.md); off unless set.",
    )
    console_reports_url: str = Field(
        default="",
        pattern=r"^(https?://[^?#]+)?$",
        description="The reports service's base URL (e.g. http://parley-reports:8085) the console's "
        "Reports page calls with the signed-in user's own token; empty: no Reports page.",
    )
    console_dev_sign_in: bool = Field(
        default=False,
        description="Development only: the console's sign-in page also mints a token from "
        "PARLEY_JWT_HS256_SECRET for any user and tenant. Never in a deployment.",
    )

    @model_validator(mode="after")
    def _dev_sign_in_needs_the_secret(self) -> OnboardingSettings:
        if self.console_dev_sign_in and self.jwt_hs256_secret is None:
            raise ValueError("PARLEY_CONSOLE_DEV_SIGN_IN needs PARLEY_JWT_HS256_SECRET (it signs the tokens)")
        return self
