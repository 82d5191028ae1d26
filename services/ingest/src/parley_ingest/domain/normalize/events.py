"""Parsed provider events become Parley events once their channel is known (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley_events import (
    ChannelSnapshot,
    CustomerAliasRecorded,
    HandoverReceived,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    MessageStatusChanged,
    MessagingLimitChanged,
    NumberThroughputChanged,
    Provider,
    TemplateCategoryChanged,
    TemplateQualityChanged,
    TemplateStatusChanged,
)
from parley_providers.inbound import (
    ChangeAction,
    ParsedChange,
    ParsedHandover,
    ParsedMessage,
    ParsedMessagingLimit,
    ParsedStatus,
    ParsedTemplateStatus,
    ParsedThroughputChange,
    digest,
)


def message_event_id(provider: Provider, account_id: str, provider_message_id: str) -> str:
    """Deterministic: the same provider message always gets the same id."""
    return "msg_" + digest(provider.value, account_id, provider_message_id)


def conversation_id(tenant_id: str, channel_id: str, conversation_key: str) -> str:
    """Deterministic: one id per thread within a channel."""
    return "conv_" + digest(tenant_id, channel_id, conversation_key)


def message_event(parsed: ParsedMessage, channel: ChannelSnapshot, delivery_id: str) -> MessageReceived:
    """Attach tenant and channel to a parsed message and give it its deterministic ids."""
    # a deletion names the deleted message's id: it is a new event about that message
    id_source = (
        f"deleted:{parsed.provider_message_id}" if parsed.content.deleted else parsed.provider_message_id
    )
    return MessageReceived(
        event_id=message_event_id(parsed.provider, parsed.account_id, id_source),
        tenant_id=channel.tenant_id,
        channel_id=channel.channel_id,
        provider=parsed.provider,
        account_id=parsed.account_id,
        conversation_id=conversation_id(channel.tenant_id, channel.channel_id, parsed.conversation_key),
        conversation_key=parsed.conversation_key,
        direction=parsed.direction,
        author=parsed.author,
        content=parsed.content,
        provider_message_id=parsed.provider_message_id,
        provider_timestamp=parsed.provider_timestamp,
        delivery_id=delivery_id,
        kind=parsed.kind,
        standby=parsed.standby,
    )


def handover_event(parsed: ParsedHandover, channel: ChannelSnapshot, delivery_id: str) -> HandoverReceived:
    """A provider's word on who answers a thread, with a deterministic id."""
    return HandoverReceived(
        event_id="hnd_"
        + digest(
            parsed.provider.value,
            parsed.account_id,
            parsed.conversation_key,
            parsed.action.value,
            parsed.provider_timestamp.isoformat(),
        ),
        tenant_id=channel.tenant_id,
        channel_id=channel.channel_id,
        provider=parsed.provider,
        account_id=parsed.account_id,
        conversation_id=conversation_id(channel.tenant_id, channel.channel_id, parsed.conversation_key),
        conversation_key=parsed.conversation_key,
        action=parsed.action,
        parley_active=parsed.parley_active,
        new_owner_app_id=parsed.new_owner_app_id,
        previous_owner_app_id=parsed.previous_owner_app_id,
        requested_owner_app_id=parsed.requested_owner_app_id,
        metadata=parsed.metadata,
        provider_timestamp=parsed.provider_timestamp,
        delivery_id=delivery_id,
    )


def status_event(parsed: ParsedStatus, channel: ChannelSnapshot, delivery_id: str) -> MessageStatusChanged:
    """A receipt for the business's messages, with a deterministic id."""
    watermark = parsed.watermark.isoformat() if parsed.watermark else ""
    return MessageStatusChanged(
        event_id="sts_"
        + digest(
            parsed.provider.value,
            parsed.account_id,
            parsed.conversation_key,
            parsed.status.value,
            ",".join(parsed.provider_message_ids),
            watermark,
            parsed.provider_timestamp.isoformat(),
        ),
        tenant_id=channel.tenant_id,
        channel_id=channel.channel_id,
        provider=parsed.provider,
        account_id=parsed.account_id,
        conversation_id=conversation_id(channel.tenant_id, channel.channel_id, parsed.conversation_key),
        conversation_key=parsed.conversation_key,
        status=parsed.status,
        provider_message_ids=parsed.provider_message_ids,
        watermark=parsed.watermark,
        errors=parsed.errors,
        pricing=parsed.pricing,
        provider_timestamp=parsed.provider_timestamp,
        delivery_id=delivery_id,
    )


def template_event(
    parsed: ParsedTemplateStatus, tenant_id: str, delivery_id: str
) -> TemplateStatusChanged | TemplateCategoryChanged | TemplateQualityChanged:
    """A template's review outcome, new category or new quality rating, for the tenant that owns
    the WhatsApp Business Account."""
    changed = parsed.status or parsed.category or parsed.quality_score or ""
    event_id = digest(
        parsed.business_account_id,
        parsed.template_id or parsed.template_name or "",
        parsed.language or "",
        parsed.update,
        changed,
        parsed.provider_timestamp.isoformat(),
    )
    common = {
        "tenant_id": tenant_id,
        "business_account_id": parsed.business_account_id,
        "template_id": parsed.template_id,
        "template_name": parsed.template_name,
        "language": parsed.language,
        "provider_timestamp": parsed.provider_timestamp,
        "delivery_id": delivery_id,
    }
    if parsed.update == "category":
        return TemplateCategoryChanged(
            event_id=f"tplcat_{event_id}",
            previous_category=parsed.previous_category,
            new_category=changed,
            **common,
        )
    if parsed.update == "quality":
        return TemplateQualityChanged(
            event_id=f"tplq_{event_id}",
            previous_quality_score=parsed.previous_quality_score,
            new_quality_score=changed,
            **common,
        )
    return TemplateStatusChanged(
        event_id="tpl_"
        + digest(
            parsed.business_account_id,
            parsed.template_id or parsed.template_name or "",
            parsed.language or "",
            parsed.status,
            parsed.provider_timestamp.isoformat(),
        ),
        status=parsed.status,
        reason=parsed.reason,
        category=parsed.category,
        **common,
    )


def alias_event(
    channel: ChannelSnapshot, provider: Provider, alias_key: str, conversation_key: str, at: datetime
) -> CustomerAliasRecorded:
    """An identifier of a customer leads to their conversation, with a deterministic id."""
    return CustomerAliasRecorded(
        event_id="als_" + digest(channel.channel_id, alias_key, conversation_key),
        tenant_id=channel.tenant_id,
        channel_id=channel.channel_id,
        provider=provider,
        alias_key=alias_key,
        conversation_key=conversation_key,
        recorded_at=at,
    )


def limit_event(parsed: ParsedMessagingLimit, tenant_id: str, delivery_id: str) -> MessagingLimitChanged:
    """A business's messaging limit for the tenant that owns the WhatsApp Business Account."""
    return MessagingLimitChanged(
        event_id="lim_"
        + digest(parsed.business_account_id, parsed.tier, parsed.provider_timestamp.isoformat()),
        tenant_id=tenant_id,
        business_account_id=parsed.business_account_id,
        tier=parsed.tier,
        messaging_limit=parsed.messaging_limit,
        provider_timestamp=parsed.provider_timestamp,
        delivery_id=delivery_id,
    )


def throughput_event(
    parsed: ParsedThroughputChange, tenant_id: str, delivery_id: str
) -> NumberThroughputChanged:
    """A number's throughput changed, for the tenant that owns its WhatsApp Business Account."""
    return NumberThroughputChanged(
        event_id="thr_"
        + digest(
            parsed.business_account_id,
            parsed.display_phone_number,
            parsed.event,
            parsed.provider_timestamp.isoformat(),
        ),
        tenant_id=tenant_id,
        business_account_id=parsed.business_account_id,
        display_phone_number=parsed.display_phone_number,
        event=parsed.event,
        provider_timestamp=parsed.provider_timestamp,
        delivery_id=delivery_id,
    )


def change_event(
    parsed: ParsedChange, channel: ChannelSnapshot, delivery_id: str
) -> MessageEdited | MessageDeleted:
    """An edit or removal of a message, naming the message's own event id; a deterministic id
    (an edit: per text and time, so a second edit is a new event; a removal: once per message)."""
    fields: dict[str, Any] = {
        "tenant_id": channel.tenant_id,
        "channel_id": channel.channel_id,
        "provider": parsed.provider,
        "account_id": parsed.account_id,
        "conversation_id": conversation_id(channel.tenant_id, channel.channel_id, parsed.conversation_key),
        "conversation_key": parsed.conversation_key,
        "provider_message_id": parsed.provider_message_id,
        "message_event_id": message_event_id(parsed.provider, parsed.account_id, parsed.provider_message_id),
        "author": parsed.author,
        "kind": parsed.kind,
        "provider_timestamp": parsed.provider_timestamp,
        "delivery_id": delivery_id,
    }
    if parsed.action is ChangeAction.EDITED:
        return MessageEdited(
            event_id="edt_"
            + digest(
                parsed.provider.value,
                parsed.account_id,
                parsed.provider_message_id,
                parsed.provider_timestamp.isoformat(),
                parsed.text or "",
            ),
            text=parsed.text,
            **fields,
        )
    return MessageDeleted(
        event_id="del_" + digest(parsed.provider.value, parsed.account_id, parsed.provider_message_id),
        **fields,
    )
