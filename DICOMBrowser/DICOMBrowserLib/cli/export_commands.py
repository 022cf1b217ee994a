"""Export commands of `dicombrowser`: export (volume, segmentation, scene) and deidentify.

Thin shells over DICOMBrowserLogic's export methods. `export SOURCE --study UID` writes a
volume as a new series of the study; SOURCE is a volume or scene file, or a database UID loaded
through the plugins. Destinations combine: `--to-database`, `--output-dir DIR`, `--send NODE`.
"""
from __future__ import annotations

import json

import click

from . import CLIContext, pass_cli


def _print_result(result, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return
    click.echo(f"Series {result.series_uid} ({len(result.datasets)} objects) in study {result.study_uid}")
    for note in result.notes:
        click.echo(f"  note: {note}")
    if result.files:
        folders = sorted({str(f.parent) for f in result.files})
        click.echo(f"  written to {', '.join(folders)}")
    if result.imported:
        click.echo("  imported into the database")
    if result.sent is not None:
        click.echo(f"  sent {result.sent.sent} of {result.sent.total}"
                   + (f", {len(result.sent.failed)} failed" if result.sent.failed else ""))


def _check_sent(result) -> None:
    if result.sent is not None and result.sent.failed:
        path, reason = result.sent.failed[0]
        raise click.ClickException(f"{len(result.sent.failed)} object(s) not sent, e.g. {path}: {reason}")


def deidentify_options(function):
    """The de-identification options shared by export, send and deidentify (see docs/export.md)."""
    from ..deidprofile import OPTION_LABELS, PROFILE_OPTIONS

    options = [
        click.option("--key", "deid_key", default=None, envvar="DICOMBROWSER_DEID_KEY",
                     help="Project key: the same key gives the same new UIDs, IDs and date shift "
                          "(default: $DICOMBROWSER_DEID_KEY, else a random key per run)."),
        click.option("--retain", "deid_retain", multiple=True, type=click.Choice(sorted(PROFILE_OPTIONS)),
                     help="PS3.15 Annex E option, applied as its column of Table E.1-1 (repeatable): "
                          + "; ".join(f"{name}: {OPTION_LABELS[name]} (DCM {code})"
                                      for name, code in PROFILE_OPTIONS.items())
                          + ". dates and full-dates exclude each other."),
        click.option("--keep-private", "deid_keep_private", multiple=True, metavar="TAG",
                     help="A private tag to keep, as gggg,xxee or gggg,eeee with its creator: 'CREATOR:gggg,xxee' "
                          "(repeatable); all other private tags are removed."),
        click.option("--patient-id", "deid_patient_id", default=None,
                     help="The de-identified PatientID (default: derived from the key and the original ID)."),
        click.option("--patient-name", "deid_patient_name", default=None,
                     help="The de-identified PatientName (default: the new PatientID)."),
        click.option("--allow-burned-in", "deid_allow_burned_in", is_flag=True,
                     help="De-identify images marked BurnedInAnnotation=YES anyway (their pixels are not cleaned)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def deidentify_settings(deidentify: bool, key, retain, keep_private, patient_id, patient_name, allow_burned_in):
    """DeidentifyOptions from the shared flags (None when --deidentify was not given)."""
    if not deidentify:
        return None
    from ..deidentify import DeidentifyOptions

    return DeidentifyOptions(key=key, options=set(retain), keep_private=list(keep_private), patient_id=patient_id,
                             patient_name=patient_name, allow_burned_in=allow_burned_in)


@click.command("export")
@click.argument("source")
@click.option("--study", "study_uid", required=True, help="StudyInstanceUID (in the database) the new series joins.")
@click.option("--modality", type=click.Choice(["CT", "MR", "OT", "SEG"], case_sensitive=False), default="CT",
              show_default=True, help="CT Image, MR Image or Secondary Capture (OT) objects, one per slice; SEG: "
                                      "SOURCE is a labelmap, written as one DICOM Segmentation.")
@click.option("--reference", "reference_uid", default=None,
              help="SEG: the series (of --study) the labelmap was drawn on (default: the study's only series).")
@click.option("--segment", "segment_texts", multiple=True, metavar="LABEL=Name[:R,G,B[:Category:Type]]",
              help="SEG: name, colour and terms of a segment (repeatable). LABEL is a labelmap value, or a "
                   "segment's number (1 = first), name or ID in a .seg.nrrd; a term is CodeValue^Scheme^Meaning "
                   "(e.g. 123037004^SCT^Anatomical Structure:10200004^SCT^Liver). Default: the .seg.nrrd's "
                   "terminology, else 'Segment <label>' as SNOMED CT Tissue.")
@click.option("--fractional", is_flag=True,
              help="SEG: write a FRACTIONAL segmentation (0..255) instead of BINARY; a float volume in 0..1 "
                   "is then one probability segment.")
@click.option("--enhanced", is_flag=True,
              help="CT/MR: one enhanced multi-frame object (Legacy Converted Enhanced CT/MR Image, written by "
                   "highdicom's converter; a 4D sequence with temporal positions) instead of one object per slice.")
@click.option("--series-description", default="", help="SeriesDescription (default: the node's name).")
@click.option("--series-number", type=int, default=None, help="SeriesNumber (default: one past the study's highest).")
@click.option("--set", "assignments", multiple=True, metavar="Keyword=Value",
              help="Set a DICOM attribute on every object (repeatable; multiple values separated by \\).")
@click.option("--frame-of-reference", default="auto", show_default=True,
              help="auto (keep the loaded series' frame if the study has it, else new), study (the study's only "
                   "frame: the volume is in its patient coordinates), new, or a UID.")
@click.option("--node", "node_name", default=None, help="The volume node to export when SOURCE is a scene (.mrb/.mrml).")
@click.option("--loadable", type=int, default=None, help="When SOURCE is a UID: the loadable to load (as examine lists).")
@click.option("--to-database", is_flag=True, help="Import the new series into the database (all or nothing).")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None, help="Write the files to this folder.")
@click.option("--send", "send_to", default=None, metavar="NODE", help="C-STORE the new series to a configured node.")
@click.option("--deidentify", is_flag=True, help="De-identify (PS3.15 Basic Profile + --retain options) before writing.")
@deidentify_options
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@pass_cli
def export_command(state: CLIContext, source: str, study_uid: str, modality: str, reference_uid: str | None,
                   segment_texts: tuple[str, ...], fractional: bool, enhanced: bool, series_description: str,
                   series_number: int | None, assignments: tuple[str, ...], frame_of_reference: str,
                   node_name: str | None, loadable: int | None, to_database: bool, output_dir: str | None,
                   send_to: str | None, deidentify: bool, deid_key, deid_retain, deid_keep_private, deid_patient_id,
                   deid_patient_name, deid_allow_burned_in, as_json: bool) -> None:
    """Write a volume as a new series of an existing study (CT/MR/OT image per slice; 4D: one series;
    --enhanced: one multi-frame CT/MR object).

    SOURCE is a volume file (.nrrd, .nii, .nii.gz, .seq.nrrd for 4D), a scene (.mrb, .mrml;
    --node picks the volume) or a database UID (series) loaded through the plugins. With
    --modality SEG, SOURCE is a 3D Slicer segmentation (.seg.nrrd: overlapping segments kept) or a
    labelmap file, written as one DICOM Segmentation of the series --reference.
    """
    from ..export import VolumeExportOptions
    from ..export.volume import parse_assignments

    settings = deidentify_settings(deidentify, deid_key, deid_retain, deid_keep_private, deid_patient_id,
                                   deid_patient_name, deid_allow_burned_in)
    if modality.upper() != "SEG" and (segment_texts or fractional):
        raise click.UsageError("--segment and --fractional apply to --modality SEG")
    if enhanced and modality.upper() not in ("CT", "MR"):
        raise click.UsageError(f"--enhanced writes CT or MR (Legacy Converted Enhanced CT/MR Image), not {modality.upper()}")
    if modality.upper() == "SEG":
        from ..export.segmentation import parse_segment

        if assignments:
            raise click.UsageError("--set applies to image series, not to SEG")
        result = state.logic().export_segmentation(
            source, study_uid, reference_uid, segments=[parse_segment(t) for t in segment_texts],
            series_description=series_description, output_dir=output_dir, to_database=to_database,
            send_to=send_to, deidentify=settings, fractional=fractional)
        _print_result(result, as_json)
        _check_sent(result)
        return
    options = VolumeExportOptions(modality=modality.upper(), series_description=series_description,
                                  series_number=series_number, frame_of_reference=frame_of_reference,
                                  overrides=parse_assignments(assignments), enhanced=enhanced)
    result = state.logic().export_volume(source, study_uid, options, node_name=node_name, loadable=loadable,
                                         output_dir=output_dir, to_database=to_database, send_to=send_to,
                                         deidentify=settings)
    _print_result(result, as_json)
    _check_sent(result)


@click.command("deidentify")
@click.argument("uids", nargs=-1, required=True)
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Write the de-identified files to this folder.")
@click.option("--to-database", "to_database", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Import the de-identified files into the database in DIR (created if needed; not this one).")
@deidentify_options
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@pass_cli
def deidentify_command(state: CLIContext, uids: tuple[str, ...], output_dir: str | None, to_database: str | None,
                       deid_key, deid_retain, deid_keep_private, deid_patient_id, deid_patient_name,
                       deid_allow_burned_in, as_json: bool) -> None:
    """De-identified copies (PS3.15 Annex E Basic Profile, --retain options) of patients, studies or series.

    The originals and this database are not changed. Use the same --key to get the same new
    UIDs, patient IDs and date shifts again (e.g. for later studies of the same patients).
    """
    if output_dir is None and to_database is None:
        raise click.UsageError("give --output-dir DIR and/or --to-database DIR")
    settings = deidentify_settings(True, deid_key, deid_retain, deid_keep_private, deid_patient_id,
                                   deid_patient_name, deid_allow_burned_in)
    try:
        summary = state.logic().deidentify(list(uids), settings, output_dir=output_dir, to_database=to_database)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"De-identified {len(summary.written)} object(s)"
                   + (f" into {output_dir}" if output_dir else "") + (f"; imported into {to_database}" if to_database else ""))
        for old, new in summary.uid_map.items():
            click.echo(f"  {old} -> {new}")
    if summary.refused:
        for path, reason in summary.refused[:10]:
            click.echo(f"refused: {reason}" if path in reason else f"refused: {path}: {reason}", err=True)
        raise click.ClickException(f"{len(summary.refused)} object(s) not de-identified")


@click.command("export-scene")
@click.argument("sources", nargs=-1, required=True)
@click.option("--study", "study_uid", required=True, help="StudyInstanceUID (in the database) the scene object joins.")
@click.option("--series-description", default="Slicer Data Bundle", show_default=True)
@click.option("--to-database", is_flag=True, help="Import the scene object into the database.")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None, help="Write the file to this folder.")
@click.option("--send", "send_to", default=None, metavar="NODE", help="C-STORE the scene object to a configured node.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@pass_cli
def export_scene_command(state: CLIContext, sources: tuple[str, ...], study_uid: str, series_description: str,
                         to_database: bool, output_dir: str | None, send_to: str | None, as_json: bool) -> None:
    """Store a whole scene in the study as one DICOM object (3D Slicer's data bundle).

    SOURCES is one scene file (.mrb, .mrml) or database UIDs whose default loadables make the
    scene. `load` of the object (plugin DICOMSlicerDataBundlePlugin) restores the scene.
    """
    source = sources[0] if len(sources) == 1 else list(sources)
    result = state.logic().export_scene(source, study_uid, series_description=series_description,
                                        output_dir=output_dir, to_database=to_database, send_to=send_to)
    _print_result(result, as_json)
    _check_sent(result)


def register(cli: click.Group) -> None:
    """Add the export commands to the `dicombrowser` group."""
    cli.add_command(export_command)
    cli.add_command(deidentify_command)
    cli.add_command(export_scene_command)
