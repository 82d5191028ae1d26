"""Onboarding's admin API (``/v1``): channels, connection flows, WhatsApp onboarding, teams.

Every route needs a bearer token; every read and write is scoped to the token's tenant, and only
admins change anything. Another tenant's objects answer 404. No credential is ever returned.

No ``from __future__ import annotations`` here: FastAPI must see the dependency objects built
inside ``create_api`` when it reads the route signatures.
"""

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI
from parley_events import BusinessHours, ChannelRole, ChannelStatus, Provider
from parley_providers import ProviderError
from parley_providers.base import MessageTemplate
from parley_shared.api import ApiError, error_responses, install_error_handlers, principal_dependency
from parley_shared.auth import Principal, TokenVerifier
from pydantic import BaseModel, ConfigDict, Field

from parley_onboarding.domain.channels import Access, Channel
from parley_onboarding.domain.errors import DomainError
from parley_onboarding.domain.teams import Team
from parley_onboarding.domain.whatsapp import OPERATOR_STEPS, WhatsAppOnboarding
from parley_onboarding.service import OnboardingService


class ChannelOut(BaseModel):
    """A channel as admins and agents see it (never its credentials)."""

    id: str
    provider: Provider
    account_id: str
    business_account_id: str | None
    connect_path: str | None = Field(
        default=None,
        description="How an Instagram profile is connected: `page` (through its Facebook Page) or "
        "`instagram_login` (Instagram Login, no Page); none for providers with one way.",
    )
    status: ChannelStatus
    display_name: str | None
    settings: dict[str, Any]
    access: dict[str, Any]
    token_expires_at: datetime | None
    hours_open: bool | None = Field(
        default=None,
        description="Whether the channel is in business hours, as last announced "
        "(`channel.hours_changed`); null: never announced (no schedule: always open).",
    )
    revision: int


INT64_MAX = 2**63 - 1
"""The largest integer the store keeps (BSON and PostgreSQL bigint): a larger one is a 422, not a 500."""


class SettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=255)
    auto_ownership: bool | None = None
    auto_resolve_new_s: int | None = Field(
        default=None, le=INT64_MAX, description="Seconds; send 0 to turn off."
    )
    auto_resolve_pending_s: int | None = Field(
        default=None, le=INT64_MAX, description="Seconds; send 0 to turn off."
    )
    human_agent_tag: bool | None = None
    mark_read_on_open: bool | None = Field(
        default=None,
        description="WhatsApp: mark the customer's last message read when an agent who may reply opens "
        "the conversation (routing's POST /v1/conversations/{id}/open). Off by default.",
    )
    text_limit: int | None = Field(
        default=None, le=INT64_MAX, description="Characters; send 0 to remove the override."
    )
    business_hours: BusinessHours | None = Field(
        default=None,
        description="The weekly schedule in a time zone, with holidays; null removes it (always "
        "open). Replaces the whole schedule.",
    )
    away_message: str | None = Field(
        default=None,
        description="Sent once per conversation per closed period to a customer who writes outside "
        "business hours; at most the provider's reply length; null removes it.",
    )
    x_api: Literal["activity", "account_activity"] | None = Field(
        default=None,
        description="X channels: the delivery API (switching subscribes through the new one, then "
        "removes the old one's subscriptions).",
    )


class AccessIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_access: dict[str, ChannelRole] = Field(default_factory=dict)
    team_access: dict[str, ChannelRole] = Field(default_factory=dict)
    all_users_role: ChannelRole | None = None
    all_teams_role: ChannelRole | None = None


class MetaStart(BaseModel):
    code: str = Field(min_length=1)
    redirect_uri: str = Field(min_length=1)


class MetaActivate(BaseModel):
    page_ids: list[str] = Field(default_factory=list)
    instagram_account_ids: list[str] = Field(default_factory=list)


class XConnect(BaseModel):
    code: str = Field(min_length=1)
    redirect_uri: str = Field(min_length=1)
    code_verifier: str = Field(min_length=1)


class InstagramLogin(BaseModel):
    code: str = Field(min_length=1)
    redirect_uri: str = Field(min_length=1)


class EmbeddedSignupIn(BaseModel):
    """What the browser got back from WhatsApp Embedded Signup: FB.login's ``code`` and the
    session-info message's WABA and phone number ids (hints: the provider must confirm them)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=2048, description="FB.login's authResponse.code.")
    waba_id: str = Field(min_length=1, max_length=32, description="Digits.", examples=["102290129340398"])
    phone_number_id: str = Field(
        min_length=1, max_length=32, description="Digits.", examples=["106540352242922"]
    )
    pin: str | None = Field(
        default=None,
        description="The number's two-step verification PIN (6 digits) when the business has one; "
        "unset: Parley generates one and keeps it sealed.",
    )


class EmbeddedSignupConfigOut(BaseModel):
    """What the browser needs to launch Embedded Signup (FB.login with ``config_id``,
    ``response_type: "code"``, ``override_default_response_type: true``)."""

    app_id: str
    config_id: str | None = Field(description="None: this deployment has no configuration id set.")


class EmbeddedSignupOut(BaseModel):
    """The WhatsApp onboarding Embedded Signup made, and its channel (active)."""

    onboarding: "OnboardingOut"
    channel: ChannelOut


class TeamIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class TeamOut(BaseModel):
    id: str
    name: str
    members: list[str]
    business_hours: BusinessHours | None = Field(
        default=None, description="The schedule of the team's channels that have none of their own."
    )


class TeamHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    business_hours: BusinessHours | None = Field(
        default=None,
        description="The weekly schedule in a time zone, with holidays; null (or none) removes it: "
        "the PUT replaces the team's hours.",
    )


class OnboardingOut(BaseModel):
    id: str
    step: str
    next_actor: str
    history: list[dict[str, Any]]
    phone_number: str | None
    display_name: str | None
    landline: bool
    code_attempts: int
    channel_id: str | None


class SubscriptionCheckOut(BaseModel):
    """What a webhook subscription check found."""

    channel_id: str
    outcome: Literal["complete", "repaired", "lost", "no_credential"]
    missing: list[str] = Field(description="What the subscription lacked when it was read.")
    restored: list[str] = Field(
        default_factory=list, description="What was missing and is subscribed again (X's event types)."
    )


def channel_out(channel: Channel) -> ChannelOut:
    return ChannelOut(
        id=channel.id,
        provider=channel.provider,
        account_id=channel.account_id,
        business_account_id=channel.business_account_id,
        connect_path=channel.connect_path,
        status=channel.status,
        display_name=channel.settings.display_name,
        settings={
            "auto_ownership": channel.settings.auto_ownership,
            "auto_resolve_new_s": channel.settings.auto_resolve_new_s,
            "auto_resolve_pending_s": channel.settings.auto_resolve_pending_s,
            "human_agent_tag": channel.settings.human_agent_tag,
            "text_limit": channel.settings.text_limit,
            "business_hours": hours.model_dump(mode="json")
            if (hours := channel.settings.business_hours) is not None
            else None,
            "away_message": channel.settings.away_message,
            "mark_read_on_open": channel.settings.mark_read_on_open,
            **({"x_api": channel.x_api} if channel.x_api is not None else {}),
        },
        access={
            "user_access": dict(channel.access.user_access),
            "team_access": dict(channel.access.team_access),
            "all_users_role": channel.access.all_users_role,
            "all_teams_role": channel.access.all_teams_role,
        },
        token_expires_at=channel.token_expires_at,
        hours_open=channel.hours_open,
        revision=channel.revision,
    )


def team_out(team: Team) -> TeamOut:
    return TeamOut(id=team.id, name=team.name, members=list(team.members), business_hours=team.business_hours)


def onboarding_out(o: WhatsAppOnboarding) -> OnboardingOut:
    return OnboardingOut(
        id=o.id,
        step=o.step.value,
        next_actor=o.next_actor.value,
        history=[
            {
                "step": r.step.value,
                "at": r.at,
                "by": r.by,
                "next_actor": r.next_actor.value,
                "expected_wait": r.expected_wait,
            }
            for r in o.history
        ],
        phone_number=o.phone_number,
        display_name=o.display_name,
        landline=o.landline,
        code_attempts=o.code_attempts,
        channel_id=o.channel_id,
    )


class TemplateIn(BaseModel):
    """A message template to submit for the provider's review (WhatsApp: Meta's
    ``message_templates`` fields, components as Meta describes them, with examples)."""

    name: str = Field(examples=["order_update"])
    language: str = Field(examples=["en_US"])
    category: str = Field(examples=["UTILITY", "MARKETING", "AUTHENTICATION"])
    components: list[dict[str, Any]] = Field(
        examples=[
            [
                {
                    "type": "BODY",
                    "text": "Hi {{1}}, order {{2}} shipped.",
                    "example": {"body_text": [["Ada", "#42"]]},
                }
            ]
        ]
    )
    parameter_format: str | None = Field(default=None, examples=["POSITIONAL", "NAMED"])


class TemplateOut(BaseModel):
    """A template of the channel's business account, with the provider's review status."""

    id: str
    name: str
    language: str
    status: str = Field(examples=["PENDING", "APPROVED", "REJECTED", "PAUSED", "DISABLED"])
    category: str | None = None
    parameter_count: int = Field(description="Values a send gives: the header's and body's parameters.")
    quality_score: str | None = None
    rejected_reason: str | None = None


def template_out(t: MessageTemplate) -> TemplateOut:
    return TemplateOut(
        id=t.id,
        name=t.name,
        language=t.language,
        status=t.status,
        category=t.category,
        parameter_count=t.parameter_count,
        quality_score=t.quality_score,
        rejected_reason=t.rejected_reason,
    )


class PictureIn(BaseModel):
    """A profile picture: JPEG or PNG, base64-encoded, up to 5 MB."""

    content_type: str = Field(examples=["image/jpeg", "image/png"])
    data_base64: str


class ProfilePatch(BaseModel):
    """Business profile fields to change (WhatsApp's limits apply), and optionally a new picture."""

    about: str | None = Field(default=None, max_length=139)
    address: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    email: str | None = Field(default=None, max_length=128)
    websites: list[str] | None = Field(default=None, max_length=2)
    vertical: str | None = Field(default=None, examples=["RETAIL", "PROF_SERVICES", "OTHER"])
    picture: PictureIn | None = None


class ProfileOut(BaseModel):
    """The business profile as the provider gives it."""

    about: str | None = None
    address: str | None = None
    description: str | None = None
    email: str | None = None
    websites: list[str] = []
    vertical: str | None = None
    profile_picture_url: str | None = None


def create_api(service: OnboardingService, verifier: TokenVerifier) -> FastAPI:
    api = FastAPI(
        title="Parley onboarding API",
        version="1.0.0",
        description="Channels, connection flows, settings, teams and access. Bearer JWT on every route.",
        responses=error_responses(401, 422),
    )
    install_error_handlers(api)

    async def domain_error(_: Any, exc: Exception) -> Any:
        assert isinstance(exc, DomainError)
        from fastapi.responses import JSONResponse

        return JSONResponse({"code": exc.code, "message": exc.message, **exc.details}, status_code=exc.status)

    async def provider_error(_: Any, exc: Exception) -> Any:
        assert isinstance(exc, ProviderError)
        from fastapi.responses import JSONResponse

        return JSONResponse(
            {
                "code": f"PROVIDER_{exc.kind.value.upper()}",
                "message": f"{exc.provider} refused the request",
                "provider_code": exc.code,
                "provider_subcode": exc.subcode,
            },
            status_code=502 if exc.status >= 500 else 422,
        )

    api.add_exception_handler(DomainError, domain_error)
    api.add_exception_handler(ProviderError, provider_error)
    caller = Depends(principal_dependency(verifier))
    # what each kind of route may answer besides 401 and 422 (see parley_shared.api.ERRORS)
    read_one = error_responses(404)
    create = error_responses(403)
    change = error_responses(403, 404, 409)
    connect = error_responses(403, 409, 502)
    ask_provider = error_responses(403, 404, 409, 502)

    def admin(principal: Principal) -> Principal:
        if not principal.is_admin:
            raise ApiError(403, "ADMIN_REQUIRED", "only administrators change channels, teams and access")
        return principal

    @api.get("/channels", response_model=list[ChannelOut])
    async def list_channels(principal: Annotated[Principal, caller]) -> list[ChannelOut]:
        """Every channel of the caller's tenant (names are visible to everyone choosing a channel)."""
        return [channel_out(c) for c in await service.channels(principal.tenant_id)]

    @api.get("/channels/{channel_id}", response_model=ChannelOut, responses=read_one)
    async def get_channel(principal: Annotated[Principal, caller], channel_id: str) -> ChannelOut:
        return channel_out(await service.channel(principal.tenant_id, channel_id))

    @api.patch("/channels/{channel_id}/settings", response_model=ChannelOut, responses=change)
    async def patch_settings(
        principal: Annotated[Principal, caller], channel_id: str, body: SettingsPatch
    ) -> ChannelOut:
        """Change settings; 0 turns an auto-resolve threshold or text limit off."""
        admin(principal)
        changes = body.model_dump(exclude_unset=True)
        nulls = [
            k
            for k in ("auto_ownership", "human_agent_tag", "mark_read_on_open", "x_api")
            if k in changes and changes[k] is None
        ]
        if nulls:
            raise ApiError(
                422,
                "VALIDATION_ERROR",
                f"invalid: body.{nulls[0]}",
                fields=[
                    {
                        "field": f"body.{k}",
                        "message": "must be activity or account_activity"
                        if k == "x_api"
                        else "must be true or false",
                    }
                    for k in nulls
                ],
            )
        for key in ("auto_resolve_new_s", "auto_resolve_pending_s", "text_limit"):
            if changes.get(key) == 0:
                changes[key] = None
        if "business_hours" in changes:
            changes["business_hours"] = body.business_hours  # the model, not its dump
        return channel_out(
            await service.update_settings(principal.tenant_id, channel_id, changes, principal.user_id)
        )

    @api.put("/channels/{channel_id}/access", response_model=ChannelOut, responses=change)
    async def put_access(
        principal: Annotated[Principal, caller], channel_id: str, body: AccessIn
    ) -> ChannelOut:
        """Replace who may use the channel: users, teams, and the All Users / All Teams roles."""
        admin(principal)
        access = Access(body.user_access, body.team_access, body.all_users_role, body.all_teams_role)
        return channel_out(
            await service.set_access(principal.tenant_id, channel_id, access, principal.user_id)
        )

    @api.post("/channels/{channel_id}/check", response_model=ChannelOut, responses=ask_provider)
    async def check_channel(principal: Annotated[Principal, caller], channel_id: str) -> ChannelOut:
        """Ask the provider whether the channel's token still works; marks it for reconnect if not."""
        admin(principal)
        return channel_out(await service.check_channel_token(principal.tenant_id, channel_id))

    @api.post(
        "/channels/{channel_id}/subscription-check",
        response_model=SubscriptionCheckOut,
        responses=ask_provider,
    )
    async def check_subscription(
        principal: Annotated[Principal, caller], channel_id: str
    ) -> SubscriptionCheckOut:
        """Read the channel's webhook subscriptions at the provider now and restore what is missing
        (``repaired``); ``lost`` when it cannot (the channel events say why). Pages and their
        Instagram profiles; X handles on the X Activity API."""
        admin(principal)
        outcome, missing, restored = await service.check_one_channel_subscriptions(
            principal.tenant_id, channel_id, principal.user_id
        )
        return SubscriptionCheckOut(
            channel_id=channel_id, outcome=outcome, missing=list(missing), restored=list(restored)
        )

    @api.delete("/channels/{channel_id}", response_model=ChannelOut, responses=change)
    async def disconnect(principal: Annotated[Principal, caller], channel_id: str) -> ChannelOut:
        admin(principal)
        return channel_out(await service.disconnect(principal.tenant_id, channel_id, principal.user_id))

    @api.post("/connections/meta", responses=connect)
    async def start_meta(principal: Annotated[Principal, caller], body: MetaStart) -> dict[str, Any]:
        """Exchange Facebook Login's code; list Pages and linked Instagram profiles; name missing
        permissions."""
        admin(principal)
        return await service.start_meta_connection(
            principal.tenant_id, principal.user_id, body.code, body.redirect_uri
        )

    @api.post(
        "/connections/meta/{connection_id}/activate", response_model=list[ChannelOut], responses=ask_provider
    )
    async def activate_meta(
        principal: Annotated[Principal, caller], connection_id: str, body: MetaActivate
    ) -> list[ChannelOut]:
        """Activate the chosen Pages and Instagram profiles (a channel each); reconnects keep settings."""
        admin(principal)
        channels = await service.activate_meta(
            principal.tenant_id, principal.user_id, connection_id, body.page_ids, body.instagram_account_ids
        )
        return [channel_out(c) for c in channels]

    @api.post("/connections/x", response_model=ChannelOut, responses=connect)
    async def connect_x(principal: Annotated[Principal, caller], body: XConnect) -> ChannelOut:
        """Authorize one X handle (OAuth 2.0 with PKCE); each handle is its own channel."""
        admin(principal)
        return channel_out(
            await service.connect_x(
                principal.tenant_id, principal.user_id, body.code, body.redirect_uri, body.code_verifier
            )
        )

    @api.post("/connections/instagram", response_model=ChannelOut, responses=connect)
    async def connect_instagram(principal: Annotated[Principal, caller], body: InstagramLogin) -> ChannelOut:
        """Connect an Instagram professional account with Instagram Login (no Facebook Page): its
        own channel on a 60-day token, refreshed before its end."""
        admin(principal)
        return channel_out(
            await service.connect_instagram_login(
                principal.tenant_id, principal.user_id, body.code, body.redirect_uri
            )
        )

    @api.get("/connections/whatsapp/embedded-signup", response_model=EmbeddedSignupConfigOut)
    async def embedded_signup_config(principal: Annotated[Principal, caller]) -> EmbeddedSignupConfigOut:
        """The Meta app id and Embedded Signup configuration id the browser launches the flow with
        (nothing secret: the browser's page carries both)."""
        return EmbeddedSignupConfigOut.model_validate(service.embedded_signup_config())

    @api.post(
        "/connections/whatsapp/embedded-signup",
        response_model=EmbeddedSignupOut,
        responses=error_responses(403, 409, 502, 503),
    )
    async def embedded_signup(
        principal: Annotated[Principal, caller], body: EmbeddedSignupIn
    ) -> EmbeddedSignupOut:
        """Connect the number a business chose in WhatsApp Embedded Signup: the code is traded
        for the business token, the WABA and number are confirmed with Meta for that token, the
        app is subscribed to the WABA, the number registered, and the channel activated. 422:
        ``SIGNUP_CODE_INVALID`` (used or expired code), ``WABA_NUMBER_MISMATCH``,
        ``WABA_NOT_ACCESSIBLE``, ``SCOPES_MISSING``; 409: ``WABA_CLAIMED_ELSEWHERE``,
        ``ACCOUNT_CONNECTED_ELSEWHERE``; 503 ``PROVIDER_UNAVAILABLE``: nothing is active, send
        the same request again."""
        admin(principal)
        onboarding, channel = await service.embedded_signup(
            principal.tenant_id,
            principal.user_id,
            code=body.code,
            waba_id=body.waba_id,
            phone_number_id=body.phone_number_id,
            pin=body.pin,
        )
        return EmbeddedSignupOut(onboarding=onboarding_out(onboarding), channel=channel_out(channel))

    @api.post("/whatsapp/onboardings", response_model=OnboardingOut, status_code=201, responses=create)
    async def start_whatsapp(principal: Annotated[Principal, caller]) -> OnboardingOut:
        admin(principal)
        return onboarding_out(await service.start_whatsapp(principal.tenant_id))

    @api.get("/whatsapp/onboardings/{onboarding_id}", response_model=OnboardingOut, responses=read_one)
    async def get_whatsapp(principal: Annotated[Principal, caller], onboarding_id: str) -> OnboardingOut:
        return onboarding_out(await service.whatsapp(principal.tenant_id, onboarding_id))

    @api.post(
        "/whatsapp/onboardings/{onboarding_id}/{action}", response_model=OnboardingOut, responses=ask_provider
    )
    async def whatsapp_step(
        principal: Annotated[Principal, caller],
        onboarding_id: str,
        action: str,
        body: dict[str, Any] | None = None,
    ) -> OnboardingOut:
        """One step: sign-agreement, accept-terms, submit-details, account-created, approve-business-manager,
        business-verified, request-code, verify-code, request-badge, badge-decided. account-created,
        business-verified and badge-decided record what the platform or Meta did: only the platform
        operator (role ``operator``) may record them, 403 otherwise. The profile and templates steps
        are recorded when the channel's profile and template calls succeed (409 STEP_BY_API here)."""
        if action in OPERATOR_STEPS:
            if not principal.is_operator:
                raise ApiError(
                    403,
                    "OPERATOR_REQUIRED",
                    f"only the platform operator records the {action} step; a tenant admin cannot",
                )
        else:
            admin(principal)
        return onboarding_out(
            await service.whatsapp_step(
                principal.tenant_id, onboarding_id, action, body or {}, principal.user_id
            )
        )

    @api.get("/channels/{channel_id}/templates", response_model=list[TemplateOut], responses=ask_provider)
    async def list_templates(principal: Annotated[Principal, caller], channel_id: str) -> list[TemplateOut]:
        """The message templates of the channel's business account, with the provider's status."""
        admin(principal)
        return [template_out(t) for t in await service.templates(principal.tenant_id, channel_id)]

    @api.post(
        "/channels/{channel_id}/templates",
        response_model=TemplateOut,
        status_code=201,
        responses=ask_provider,
    )
    async def create_template(
        principal: Annotated[Principal, caller], channel_id: str, body: TemplateIn
    ) -> TemplateOut:
        """Submit a template for review; its parameters are counted from the components, and the
        WhatsApp onboarding's templates step is recorded."""
        admin(principal)
        return template_out(
            await service.create_template(
                principal.tenant_id, channel_id, body.model_dump(), principal.user_id
            )
        )

    @api.post(
        "/channels/{channel_id}/templates:sync", response_model=list[TemplateOut], responses=ask_provider
    )
    async def sync_templates(principal: Annotated[Principal, caller], channel_id: str) -> list[TemplateOut]:
        """List the templates and publish each one's status, category and parameter count, so
        policy checks the count of templates made outside Parley too."""
        admin(principal)
        synced = await service.sync_templates(principal.tenant_id, channel_id, principal.user_id)
        return [template_out(t) for t in synced]

    @api.delete(
        "/channels/{channel_id}/templates/{name}", response_model=list[TemplateOut], responses=ask_provider
    )
    async def delete_template(
        principal: Annotated[Principal, caller], channel_id: str, name: str, template_id: str | None = None
    ) -> list[TemplateOut]:
        """Delete every language of the template (or only the one ``template_id`` names)."""
        admin(principal)
        deleted = await service.delete_template(
            principal.tenant_id, channel_id, name, template_id, principal.user_id
        )
        return [template_out(t) for t in deleted]

    @api.get("/channels/{channel_id}/profile", response_model=ProfileOut, responses=ask_provider)
    async def get_profile(principal: Annotated[Principal, caller], channel_id: str) -> ProfileOut:
        """The business profile of the channel's number."""
        admin(principal)
        return ProfileOut.model_validate(await service.business_profile(principal.tenant_id, channel_id))

    @api.patch("/channels/{channel_id}/profile", response_model=ProfileOut, responses=ask_provider)
    async def patch_profile(
        principal: Annotated[Principal, caller], channel_id: str, body: ProfilePatch
    ) -> ProfileOut:
        """Change the business profile (and picture); the WhatsApp onboarding's profile step follows."""
        admin(principal)
        fields = body.model_dump(exclude_unset=True, exclude_none=True, exclude={"picture"})
        picture = None
        if body.picture is not None:
            try:
                data = base64.b64decode(body.picture.data_base64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ApiError(
                    422, "INVALID_PROFILE", "picture.data_base64 is not base64", field="picture"
                ) from exc
            picture = (data, body.picture.content_type)
        saved = await service.update_business_profile(
            principal.tenant_id, channel_id, fields, picture, principal.user_id
        )
        return ProfileOut.model_validate(saved)

    @api.get("/teams", response_model=list[TeamOut])
    async def list_teams(principal: Annotated[Principal, caller]) -> list[TeamOut]:
        return [team_out(t) for t in await service.teams(principal.tenant_id)]

    @api.post("/teams", response_model=TeamOut, status_code=201, responses=error_responses(403, 409))
    async def create_team(principal: Annotated[Principal, caller], body: TeamIn) -> TeamOut:
        """A new team; a tenant may have ``PARLEY_MAX_TEAMS_PER_TENANT`` (500): more is 409."""
        admin(principal)
        return team_out(await service.create_team(principal.tenant_id, body.name))

    @api.patch("/teams/{team_id}", response_model=TeamOut, responses=change)
    async def rename_team(principal: Annotated[Principal, caller], team_id: str, body: TeamIn) -> TeamOut:
        admin(principal)
        return team_out(
            await service.change_team(principal.tenant_id, team_id, lambda t: t.rename(body.name))
        )

    @api.put("/teams/{team_id}/business-hours", response_model=TeamOut, responses=change)
    async def put_team_hours(
        principal: Annotated[Principal, caller], team_id: str, body: TeamHoursIn
    ) -> TeamOut:
        """The team's business hours: every channel granting the team access takes them unless it
        has its own (several teams: the one with the highest role on the channel)."""
        admin(principal)
        return team_out(await service.set_team_hours(principal.tenant_id, team_id, body.business_hours))

    @api.delete("/teams/{team_id}", status_code=204, responses=change)
    async def delete_team(principal: Annotated[Principal, caller], team_id: str) -> None:
        admin(principal)
        await service.delete_team(principal.tenant_id, team_id)

    @api.put("/teams/{team_id}/members/{user_id}", response_model=TeamOut, responses=change)
    async def add_member(principal: Annotated[Principal, caller], team_id: str, user_id: str) -> TeamOut:
        admin(principal)
        return team_out(
            await service.change_team(principal.tenant_id, team_id, lambda t: t.add_member(user_id))
        )

    @api.delete("/teams/{team_id}/members/{user_id}", response_model=TeamOut, responses=change)
    async def remove_member(principal: Annotated[Principal, caller], team_id: str, user_id: str) -> TeamOut:
        admin(principal)
        return team_out(
            await service.change_team(principal.tenant_id, team_id, lambda t: t.remove_member(user_id))
        )

    return api
