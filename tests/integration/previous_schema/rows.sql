-- Some rows in the tables of the version before migrations.

INSERT INTO person_keys (person_id, master_key_id, wrapped_key)
VALUES ('00000000-0000-4000-8000-000000000001', 'k1', '\x0102');
INSERT INTO person_keys (person_id, erased_at)
VALUES ('00000000-0000-4000-8000-000000000002', '2026-11-30T10:00:00Z');
INSERT INTO contact_photos (person_id, content_hash, media_type, data)
VALUES ('00000000-0000-4000-8000-000000000001', 'abc', 'image/png', '\x89504e47');
INSERT INTO relay_positions (name, position) VALUES ('contacts.events', 42);

INSERT INTO rm.contacts (
    contact_id, person_id, version, position, status, company_id, company_name,
    first_names, last_names, search_text, job_title, archived, erased, outlook_sync_users
) VALUES
    ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-000000000001', 3, 40,
     'current', '00000000-0000-4000-8000-0000000000a1', 'Acme A/S', 'Karen', 'Jensen',
     'karen jensen', 'Buyer', false, false, '{alice}'),
    ('00000000-0000-4000-8000-0000000000c2', '00000000-0000-4000-8000-000000000002', 2, 41,
     'erased', '00000000-0000-4000-8000-0000000000a1', 'Acme A/S', '', '', '', NULL, false,
     true, '{}');
INSERT INTO rm.infotags (contact_id, tag, added_by, added_at)
VALUES ('00000000-0000-4000-8000-0000000000c1', 'vip', 'alice', '2026-11-30T10:00:00Z');
INSERT INTO rm.contact_addresses (contact_id, person_id, address)
VALUES ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-000000000001',
        'kj@acme.example');
INSERT INTO rm.erased_addresses (address_hash) VALUES ('h1');

INSERT INTO ledger.emails (
    message_id, event_id, from_address, to_addresses, cc_addresses, subject, sent_at
) VALUES ('m1', '00000000-0000-4000-8000-0000000000e1', 'kj@acme.example', '{sales@x.example}',
          '{}', 'Offer', '2026-11-29T09:00:00Z');
INSERT INTO ledger.email_addresses (message_id, address, role)
VALUES ('m1', 'kj@acme.example', 'from');
INSERT INTO ledger.items (kind, item_id, title, title_at)
VALUES ('opportunity', '00000000-0000-4000-8000-0000000000b1', 'Big deal', '2026-11-28T08:00:00Z');
INSERT INTO ledger.item_links (kind, item_id, contact_id, linked, changed_at)
VALUES ('opportunity', '00000000-0000-4000-8000-0000000000b1',
        '00000000-0000-4000-8000-0000000000c1', true, '2026-11-28T08:00:00Z');
INSERT INTO ledger.outlook_sync_status (
    user_id, person_id, contact_id, status, sequence, updated_at
) VALUES ('alice', '00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000000c1',
          'synced', 7, '2026-11-30T10:00:00Z');
INSERT INTO ledger.dead_letter_resubmits (partition, "offset") VALUES (0, 5);

INSERT INTO sync_contacts (
    contact_id, person_id, version, status, company_name, details, infotags, sealed
) VALUES ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-000000000001', 3,
          'current', '-', '{}', '[]', '\x00');
INSERT INTO sync_links (user_id, person_id, contact_id, wanted, state)
VALUES ('alice', '00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000000c1',
        true, 'synced');
INSERT INTO sync_outbox (person_id, payload)
VALUES ('00000000-0000-4000-8000-000000000001', '{"status": "synced"}');
