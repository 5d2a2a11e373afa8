-- The audit ledger's roles on PostgreSQL (README, Security: "Audit ledger").
--
-- Run once, as a database administrator, in the database that will hold the ledger; then, as the
-- same administrator:  writeback audit install --db postgresql://ADMIN@HOST/DB
-- which creates the tables and their guards owned by writeback_audit_owner in schema "audit" and
-- grants the worker's role append only. Give the login roles a password or certificate
-- (ALTER ROLE writeback_audit_writer PASSWORD '...'; or pg_hba cert auth) outside this file.
--
--   writeback_audit_owner   owns the schema, tables and triggers; cannot log in. Only it (and a
--                           superuser) can drop or disable the guards.
--   writeback_audit_writer  the worker (WRITEBACK_AUDIT_DB=postgresql://writeback_audit_writer@…):
--                           SELECT and INSERT on both tables, UPDATE of a head's (seq, hash),
--                           which a trigger lets move forward only, to a record that exists.
--                           No UPDATE or DELETE of records, no TRUNCATE, no DDL: it owns nothing.
--   writeback_audit_reader  `writeback audit verify` (with the ledger key): SELECT only.
--
-- TRUNCATE is refused for everyone by statement triggers as well (the owner included).

CREATE ROLE writeback_audit_owner NOLOGIN;
CREATE ROLE writeback_audit_writer LOGIN;
CREATE ROLE writeback_audit_reader LOGIN;
-- the administrator may act as the owner for `writeback audit install`
GRANT writeback_audit_owner TO CURRENT_USER;

CREATE SCHEMA audit AUTHORIZATION writeback_audit_owner;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
ALTER ROLE writeback_audit_writer SET search_path = audit;
ALTER ROLE writeback_audit_reader SET search_path = audit;
