"""``/v1/credentials``: a user's (and the admins' shared) provider and tool keys.

Values go in and are never sent back: the list shows names and metadata only.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from core.api.deps import CurrentUser, SessionDep, SettingsDep
from core.errors import ForbiddenError
from core.models.credentials import CREDENTIAL_NAME_PATTERN
from core.secrets.keys import keyring
from core.secrets.store import MAX_VALUE_CHARS, delete_credential, list_credentials, save_credential

router = APIRouter(prefix="/v1/credentials", tags=["credentials"])


class CredentialIn(BaseModel):
    name: str = Field(
        pattern=CREDENTIAL_NAME_PATTERN,
        description="How models (ai_models.credential) and tools (CREDENTIALS) name it.",
        examples=["openrouter"],
    )
    value: str = Field(min_length=1, max_length=MAX_VALUE_CHARS, description="Never returned.")
    shared: bool = Field(
        default=False, description="Admins only: a credential for every user who has none."
    )


class CredentialSaved(BaseModel):
    id: uuid.UUID
    name: str
    shared: bool
    created: bool = Field(description="False when an existing value was replaced.")


class CredentialInfo(BaseModel):
    name: str
    shared: bool
    key_id: str
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


def _owner(user: CurrentUser, shared: bool) -> uuid.UUID | None:
    if shared and not user.is_admin:
        raise ForbiddenError("shared credentials are stored by admins")
    return None if shared else user.id


@router.post("", status_code=201, summary="Store (or replace) a credential; its value is encrypted")
def store(
    body: CredentialIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> CredentialSaved:
    owner = _owner(user, body.shared)
    saved = save_credential(
        session.connection(),
        keyring(settings),
        name=body.name,
        value=body.value,
        owner=owner,
        actor=user.actor,
    )
    return CredentialSaved(id=saved.id, name=saved.name, shared=saved.shared, created=saved.created)


@router.get("", summary="Your credentials and the shared ones: names and metadata, never values")
def listing(user: CurrentUser, session: SessionDep) -> list[CredentialInfo]:
    return [CredentialInfo(**r) for r in list_credentials(session.connection(), user.id)]


@router.delete("/{name}", status_code=204, summary="Delete a credential")
def remove(
    name: str,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    shared: Annotated[bool, Query(description="Delete the shared one (admins).")] = False,
) -> Response:
    keyring(settings)
    delete_credential(session.connection(), name=name, owner=_owner(user, shared), actor=user.actor)
    return Response(status_code=204)
