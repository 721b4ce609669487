"""The web UI's labels in Danish and English, and the choice between them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

#: Languages of the UI; the first is the default.
LANGUAGES = ("da", "en")
#: The cookie the language switch sets.
LANGUAGE_COOKIE = "kontakt_lang"

MESSAGES: dict[str, dict[str, str]] = {
    "da": {
        "app_name": "Kontakt",
        "skip_to_content": "Spring til indhold",
        "language": "Sprog",
        "sign_in": "Log ind",
        "sign_out": "Log ud",
        "signed_in_as": "Logget ind som",
        "user_name": "Brugernavn",
        "admin_role": "Administratorrolle",
        "sign_in_local": "Kun til lokal kørsel: vælg en bruger.",
        "sign_in_unavailable": "Log ind via virksomhedens proxy.",
        "contacts": "Kontakter",
        "search": "Søg",
        "name": "Navn",
        "email": "E-mail",
        "phone": "Telefon",
        "free_text": "Fritekst",
        "infotag": "Infotag",
        "status": "Status",
        "status_current": "Aktuel",
        "status_former": "Tidligere",
        "status_archived": "Arkiveret",
        "status_withdrawn": "Trukket tilbage",
        "status_erased": "Slettet",
        "company": "Firma",
        "company_id": "Firma-id",
        "company_name": "Firmanavn",
        "job_title": "Stilling",
        "results": "Resultater",
        "no_results": "Ingen kontakter fundet.",
        "previous": "Forrige",
        "next": "Næste",
        "showing": "Viser {first}-{last} af {total}",
        "new_contact": "Opret kontakt",
        "create": "Opret",
        "save": "Gem",
        "first_names": "Fornavne",
        "last_names": "Efternavne",
        "department": "Afdeling",
        "work_email": "Arbejds-e-mail",
        "private_email": "Privat e-mail",
        "work_phone": "Arbejdstelefon",
        "private_phone": "Privat telefon",
        "started_on": "Startdato",
        "effective_on": "Gælder fra",
        "tabs": "Kontaktens faner",
        "tab_details": "Detaljer",
        "tab_infotags": "Infotags",
        "tab_photo": "Foto",
        "tab_opportunities": "Salgsmuligheder",
        "tab_campaigns": "Kampagner",
        "tab_projects": "Projekter",
        "tab_more": "Mere…",
        "tab_employments": "Ansættelser",
        "current_version": "Gå til den aktuelle version",
        "photo_of": "Foto af {name}",
        "no_photo": "Intet foto.",
        "upload_photo": "Upload foto",
        "photo_file": "Billedfil (JPEG, PNG eller WebP)",
        "photo_drop_hint": "Træk et billede hertil for at uploade det, eller vælg en fil.",
        "remove_photo": "Fjern foto",
        "activities": "Aktiviteter",
        "no_activities": "Ingen aktiviteter.",
        "subject": "Emne",
        "sent_at": "Sendt",
        "from": "Fra",
        "outlook_sync": "Outlook-synkronisering",
        "outlook_on": "Tænd Outlook Sync",
        "outlook_off": "Sluk Outlook Sync",
        "outlook_status": "Din synkronisering: {status}",
        "outlook_not_synced": "Du synkroniserer ikke denne kontakt.",
        "placed_tags": "Placerede infotags",
        "no_tags": "Ingen infotags.",
        "placed_as": "Placeret som",
        "active": "Aktiv",
        "inactive": "Inaktiv",
        "added_by": "Tilføjet af",
        "added_at": "Tilføjet",
        "remove": "Fjern",
        "remove_tag": "Fjern {tag}",
        "place_tag": "Placér infotag",
        "place": "Placér",
        "title": "Titel",
        "role": "Rolle",
        "no_items": "Ingen.",
        "history": "Historik",
        "no_history": "Ingen historik endnu.",
        "version": "Version",
        "ended_on": "Slutdato",
        "job_change": "Jobskifte",
        "record_job_change": "Registrér jobskifte",
        "archive": "Arkivér",
        "restore": "Genskab",
        "yes": "Ja",
        "no": "Nej",
        "saved": "Gemt.",
        "not_yet": "Ændringen er gemt, men visningen er ikke opdateret endnu. Genindlæs om lidt.",
        "duplicate": "Kontakten findes allerede:",
        "possible_duplicate": "Måske samme person:",
        "show_existing": "Vis den eksisterende kontakt",
        "create_anyway": "Opret alligevel: det er en anden person",
        "error": "Fejl",
        "not_found": "Ikke fundet.",
        "unavailable": "Tjenesten svarer ikke lige nu. Prøv igen.",
        "csrf_failed": "Formularen var udløbet. Prøv igen.",
        "page_not_found": "Siden findes ikke.",
        "sync_pending": "venter",
        "sync_linked": "i Outlook",
        "sync_updated": "opdateret i Outlook",
        "sync_unlinked": "fjernet fra Outlook",
        "sync_failed": "fejlet",
        "company_lookup_hint": "Skriv begyndelsen af firmanavnet og vælg firmaet blandt forslagene;"
        " et navn, ingen firma har, bliver et nyt firma.",
        "company_contacts": "{n} aktuelle kontakter",
        "relations": "Relationer",
        "colleagues": "Kolleger",
        "other_versions": "Personens andre versioner",
        "none": "Ingen.",
        "to": "Til",
        "sync_reason": "Årsag: {reason}",
        "older_changes": "Ældre ændringer",
        "newest_changes": "Nyeste ændringer",
        "when": "Tidspunkt",
        "who": "Hvem",
        "channel": "Kanal",
        "change": "Ændring",
        "fields_changed": "Felter: før → efter",
        "provenance": "Hvem satte felterne",
        "field": "Felt",
        "set_by": "Sat af",
        "set_at": "Sat",
        "empty_value": "tom",
        "erased_value": "slettet",
        "channel_api": "API",
        "channel_import": "Import",
        "channel_outlook_sync": "Outlook Sync",
        "channel_service": "Anden tjeneste",
        "event_ContactCreated": "Oprettet",
        "event_ContactDetailsChanged": "Oplysninger ændret",
        "event_JobChanged": "Jobskifte",
        "event_EmploymentCorrected": "Ansættelse rettet",
        "event_JobChangeWithdrawn": "Jobskifte trukket tilbage",
        "event_JobChangeUndone": "Jobskifte fortrudt",
        "event_OutlookSyncToggled": "Outlook Sync slået til eller fra",
        "event_InfotagAdded": "Infotag placeret",
        "event_InfotagRemoved": "Infotag fjernet",
        "event_PhotoChanged": "Foto skiftet",
        "event_PhotoRemoved": "Foto fjernet",
        "event_ContactArchived": "Arkiveret",
        "event_ContactRestored": "Genskabt",
        "event_ContactErased": "Slettet",
        "earlier_photos": "Tidligere fotos",
        "earlier_photo_of": "Foto af {name} fra {when}",
        "photo_set_by": "Sat af {who}, {when}",
        "no_earlier_photos": "Ingen tidligere fotos.",
        "undo_job_change": "Fortryd jobskiftet",
        "undo_hint": (
            "Denne version trækkes tilbage, og den tidligere bliver aktuel igen med sine "
            "infotags, sit foto og sine Outlook-kontakter. Begge versioners historik bevares."
        ),
        "correct_employment": "Ret ansættelsen",
        "correct_hint": "Til stavefejl og forkerte datoer. Et nyt job registreres som jobskifte.",
        "save_correction": "Gem rettelsen",
        "erase": "Slet personen",
        "erase_title": "Slet {name}",
        "erase_explained": (
            "Personens oplysninger slettes i alle versionerne herunder og kan ikke genskabes: "
            "navne, e-mailadresser, telefonnumre og fotos. Kontakten fjernes fra alle brugeres "
            "Outlook. Tilbage står kun, at personen blev slettet, af hvem, hvornår og hvorfor."
        ),
        "erase_versions": "Versioner der slettes",
        "reason": "Begrundelse (uden personoplysninger)",
        "confirm_erase": "Ja, slet personen for altid",
        "reason_needed": "Skriv en begrundelse.",
        "confirm_needed": "Bekræft sletningen.",
        "admins_only": "Kun administratorer kan gøre det.",
        "cancel": "Annullér",
    },
    "en": {
        "app_name": "Kontakt",
        "skip_to_content": "Skip to content",
        "language": "Language",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "signed_in_as": "Signed in as",
        "user_name": "User name",
        "admin_role": "Admin role",
        "sign_in_local": "Local runs only: pick a user.",
        "sign_in_unavailable": "Sign in through your organisation's proxy.",
        "contacts": "Contacts",
        "search": "Search",
        "name": "Name",
        "email": "E-mail",
        "phone": "Phone",
        "free_text": "Free text",
        "infotag": "Infotag",
        "status": "Status",
        "status_current": "Current",
        "status_former": "Former",
        "status_archived": "Archived",
        "status_withdrawn": "Withdrawn",
        "status_erased": "Erased",
        "company": "Company",
        "company_id": "Company id",
        "company_name": "Company name",
        "job_title": "Job title",
        "results": "Results",
        "no_results": "No contacts found.",
        "previous": "Previous",
        "next": "Next",
        "showing": "Showing {first}-{last} of {total}",
        "new_contact": "New contact",
        "create": "Create",
        "save": "Save",
        "first_names": "First names",
        "last_names": "Last names",
        "department": "Department",
        "work_email": "Work e-mail",
        "private_email": "Private e-mail",
        "work_phone": "Work phone",
        "private_phone": "Private phone",
        "started_on": "Start date",
        "effective_on": "Effective on",
        "tabs": "Contact tabs",
        "tab_details": "Details",
        "tab_infotags": "Infotags",
        "tab_photo": "Photo",
        "tab_opportunities": "Sales opportunities",
        "tab_campaigns": "Campaigns",
        "tab_projects": "Projects",
        "tab_more": "More…",
        "tab_employments": "Employments",
        "current_version": "Go to the current version",
        "photo_of": "Photo of {name}",
        "no_photo": "No photo.",
        "upload_photo": "Upload photo",
        "photo_file": "Image file (JPEG, PNG or WebP)",
        "photo_drop_hint": "Drop an image here to upload it, or choose a file.",
        "remove_photo": "Remove photo",
        "activities": "Activities",
        "no_activities": "No activities.",
        "subject": "Subject",
        "sent_at": "Sent",
        "from": "From",
        "outlook_sync": "Outlook sync",
        "outlook_on": "Switch Outlook Sync on",
        "outlook_off": "Switch Outlook Sync off",
        "outlook_status": "Your sync: {status}",
        "outlook_not_synced": "You do not sync this contact.",
        "placed_tags": "Placed infotags",
        "no_tags": "No infotags.",
        "placed_as": "Placed as",
        "active": "Active",
        "inactive": "Inactive",
        "added_by": "Added by",
        "added_at": "Added",
        "remove": "Remove",
        "remove_tag": "Remove {tag}",
        "place_tag": "Place an infotag",
        "place": "Place",
        "title": "Title",
        "role": "Role",
        "no_items": "None.",
        "history": "History",
        "no_history": "No history yet.",
        "version": "Version",
        "ended_on": "End date",
        "job_change": "Job change",
        "record_job_change": "Record job change",
        "archive": "Archive",
        "restore": "Restore",
        "yes": "Yes",
        "no": "No",
        "saved": "Saved.",
        "not_yet": "The change is saved but not shown yet. Reload in a moment.",
        "duplicate": "The contact exists already:",
        "possible_duplicate": "Perhaps the same person:",
        "show_existing": "Show the existing contact",
        "create_anyway": "Create anyway: this is a different person",
        "error": "Error",
        "not_found": "Not found.",
        "unavailable": "The service does not answer right now. Try again.",
        "csrf_failed": "The form had expired. Try again.",
        "page_not_found": "The page does not exist.",
        "sync_pending": "pending",
        "sync_linked": "in Outlook",
        "sync_updated": "updated in Outlook",
        "sync_unlinked": "removed from Outlook",
        "sync_failed": "failed",
        "company_lookup_hint": "Type the beginning of the company's name and pick the company from"
        " the suggestions; a name no company has becomes a new company.",
        "company_contacts": "{n} current contacts",
        "relations": "Relations",
        "colleagues": "Colleagues",
        "other_versions": "The person's other versions",
        "none": "None.",
        "to": "To",
        "sync_reason": "Reason: {reason}",
        "older_changes": "Older changes",
        "newest_changes": "Newest changes",
        "when": "When",
        "who": "Who",
        "channel": "Channel",
        "change": "Change",
        "fields_changed": "Fields: before → after",
        "provenance": "Who set each field",
        "field": "Field",
        "set_by": "Set by",
        "set_at": "Set",
        "empty_value": "empty",
        "erased_value": "erased",
        "channel_api": "API",
        "channel_import": "Import",
        "channel_outlook_sync": "Outlook sync",
        "channel_service": "Another service",
        "event_ContactCreated": "Created",
        "event_ContactDetailsChanged": "Details changed",
        "event_JobChanged": "Job change",
        "event_EmploymentCorrected": "Employment corrected",
        "event_JobChangeWithdrawn": "Job change withdrawn",
        "event_JobChangeUndone": "Job change undone",
        "event_OutlookSyncToggled": "Outlook sync switched on or off",
        "event_InfotagAdded": "Infotag placed",
        "event_InfotagRemoved": "Infotag removed",
        "event_PhotoChanged": "Photo changed",
        "event_PhotoRemoved": "Photo removed",
        "event_ContactArchived": "Archived",
        "event_ContactRestored": "Restored",
        "event_ContactErased": "Erased",
        "earlier_photos": "Earlier photos",
        "earlier_photo_of": "Photo of {name} from {when}",
        "photo_set_by": "Set by {who}, {when}",
        "no_earlier_photos": "No earlier photos.",
        "undo_job_change": "Undo the job change",
        "undo_hint": (
            "This version is withdrawn and the former one becomes current again, with its "
            "infotags, photo and Outlook items. Both versions' history stays."
        ),
        "correct_employment": "Correct the employment",
        "correct_hint": "For typos and wrong dates. A new job is recorded as a job change.",
        "save_correction": "Save the correction",
        "erase": "Erase the person",
        "erase_title": "Erase {name}",
        "erase_explained": (
            "The person's data is erased in every version below and cannot be restored: names, "
            "e-mail addresses, phone numbers and photos. The contact is removed from every user's"
            " Outlook. All that stays is that the person was erased, by whom, when and why."
        ),
        "erase_versions": "Versions that will be erased",
        "reason": "Reason (no personal data)",
        "confirm_erase": "Yes, erase this person for good",
        "reason_needed": "Give a reason.",
        "confirm_needed": "Confirm the erasure.",
        "admins_only": "Only admins can do that.",
        "cancel": "Cancel",
    },
}


def choose_language(cookie: str | None, accept_language: str | None) -> str:
    """The UI language: the switch's cookie, else the best of Accept-Language, else Danish."""
    if cookie in LANGUAGES:
        return cookie
    best: tuple[float, int, str] | None = None
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if primary in LANGUAGES and quality > 0:
            # Higher quality wins; among equals, the one named first.
            candidate = (-quality, position, primary)
            if best is None or candidate < best:
                best = candidate
    return best[2] if best else LANGUAGES[0]


def translator(language: str) -> Callable[..., str]:
    """A function giving the label of a key in the language, formatted with its arguments."""
    messages = MESSAGES.get(language, MESSAGES[LANGUAGES[0]])

    def t(key: str, **values: object) -> str:
        text = messages.get(key) or MESSAGES["en"].get(key) or key
        return text.format(**values) if values else text

    return t


#: Month names as each language abbreviates them in dates.
MONTHS = {
    "da": [
        "jan.",
        "feb.",
        "mar.",
        "apr.",
        "maj",
        "jun.",
        "jul.",
        "aug.",
        "sep.",
        "okt.",
        "nov.",
        "dec.",
    ],
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
}


def _parsed(value: object) -> date | datetime | None:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        if "T" in value or " " in value:
            return datetime.fromisoformat(value)
        return date.fromisoformat(value)
    except ValueError:
        return None


def format_when(value: object, language: str, zone: ZoneInfo) -> str:
    """A date or an instant as the language writes it, instants in the UI's time zone.

    `2026-12-03T07:15:00Z` reads `3. dec. 2026 kl. 08.15` in Danish and `3 Dec 2026, 08:15`
    in English (Europe/Copenhagen); a date alone reads without the time. Anything that is
    no date is shown as it came.
    """
    parsed = _parsed(value)
    if parsed is None:
        return "" if value is None else str(value)
    months = MONTHS.get(language, MONTHS["en"])
    danish = language == "da"
    day = parsed
    if isinstance(parsed, datetime):
        # An instant without an offset is UTC, as the APIs write every instant.
        day = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(zone)
    month = months[day.month - 1]
    text = f"{day.day}. {month} {day.year}" if danish else f"{day.day} {month} {day.year}"
    if isinstance(day, datetime):
        text += f" kl. {day:%H.%M}" if danish else f", {day:%H:%M}"
    return text
