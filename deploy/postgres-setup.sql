-- Run once as a PostgreSQL superuser: psql -f deploy/postgres-setup.sql
-- A role and a database for Tollgate. The nodes create and migrate the tables themselves on first start.
CREATE ROLE tollgate LOGIN PASSWORD 'CHANGE-ME';
CREATE DATABASE tollgate OWNER tollgate;
-- Durability: Tollgate forces synchronous_commit=on for its own sessions, whatever the server default.
-- Two nodes at Maximum Pool Size=40 each, plus a listener and the admin CLI, fit well under max_connections=100.
